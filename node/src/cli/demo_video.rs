//! `konsilium demo --video`: after the written consultation, the demo's
//! district hospital and regional center keep running with their media
//! planes and HTTP APIs on loopback, and a consultation between them is
//! open for a video consilium: the demo prints each site's room page (with
//! a token of its own) to open in Chromium, and the admin sockets for
//! `konsilium sessions`, then holds until Ctrl-C.

use anyhow::Result;
use konsilium_node::federation::wait;
use konsilium_node::http::User;
use konsilium_node::node::{self, NewConsultation, NodeEvent, NodeHandle, Target};
use konsilium_node::ops::admin;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::journal::Role;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod, Status};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How long the regional center may take to receive the consultation.
const REQUEST_PATIENCE: Duration = Duration::from_secs(60);

/// A token nobody else has: 16 random bytes, hex.
fn token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Serves one site's API on an ephemeral loopback port for one user;
/// returns the base URL.
async fn serve_api(node: Arc<NodeHandle>, user: User) -> Result<String> {
    let app = konsilium_node::http::router(node, vec![user], None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("demo API at {addr} stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

pub async fn hold(
    district: Arc<NodeHandle>,
    regional: Arc<NodeHandle>,
    regional_events: &mut broadcast::Receiver<NodeEvent>,
    dir: &Path,
) -> Result<()> {
    println!("\n[9] a video consilium between the district hospital and the regional center");
    let (id, _) = district
        .request_consultation(
            NewConsultation {
                target: Target::Best,
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::Regional,
                urgency: Urgency::Emergency,
                region: None,
                consent: Consent::Given {
                    by: "the patient".into(),
                    at: node::now(),
                    method: ConsentMethod::Electronic,
                    document: None,
                },
                physician: "Dr. Ivanova".into(),
                entered_by: "Dr. Ivanova".into(),
                extract: CaseExtract {
                    summary: "58-year-old, chest pain for 2 h, ST elevation in V2-V4".into(),
                    questions: "Thrombolysis here, or transfer for PCI?".into(),
                },
                escalated_from: None,
            },
            vec![],
        )
        .await?;
    wait::status(regional_events, id, Status::Requested, REQUEST_PATIENCE).await?;
    let (physician, consultant) = (token()?, token()?);
    let at_district = serve_api(
        district.clone(),
        User::with_token("Dr. Ivanova", Role::Physician, &physician),
    )
    .await?;
    let at_regional = serve_api(
        regional.clone(),
        User::with_token("Dr. Petrov", Role::Consultant, &consultant),
    )
    .await?;
    let sockets = [dir.join("district.sock"), dir.join("regional.sock")];
    let _admin = (
        admin::serve(district.clone(), &sockets[0]).await?,
        admin::serve(regional.clone(), &sockets[1]).await?,
    );
    println!(
        "    emergency consultation {id}: open both pages in Chromium (camera and microphone)"
    );
    println!("      district physician  {at_district}/consultations/{id}/room#token={physician}");
    println!("      regional consultant {at_regional}/consultations/{id}/room#token={consultant}");
    println!("    the first to join opens the session; each page shows the other site, who is in");
    println!("    the room, chat and shared files. Live links and browsers, RTT, loss, bitrate:");
    for socket in &sockets {
        println!("      konsilium sessions --socket {}", socket.display());
    }
    println!("    Ctrl-C ends the demo.");
    tokio::signal::ctrl_c().await?;
    // Let the pages hear the session end before the nodes go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
