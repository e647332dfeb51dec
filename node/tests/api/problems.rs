//! The API's refusals, each an RFC 9457 problem document.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_with_problem_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let m = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let n = Arc::new(node::start(m.setup(vec![], vec![])).await.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, task) = api::serve_until(
        n.clone(),
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            users: vec![User::with_token("Dr. Ivanova", Role::Physician, "phys")],
            upload_dir: None,
            tls: None,
        },
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let base = format!("http://{addr}");
    let api = Api {
        client: Client::new(),
        base,
    };

    // No token, a wrong token, a wrong scheme.
    let resp = api
        .client
        .get(format!("{}/consultations", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("missing"),
        "{body}"
    );
    let wrong = api.get("/consultations", "not-a-token").await;
    assert_problem(&wrong, StatusCode::UNAUTHORIZED, "not valid");
    // The failed login is a security event in the journal.
    let failed_logins = async || {
        let (entries, _) = n.journal().await.unwrap();
        (entries.into_iter())
            .filter_map(|e| match e.action {
                konsilium_protocol::journal::Action::FailedLogin { user } => Some(user),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        failed_logins().await,
        ["unknown token"],
        "failed login journaled"
    );
    // A flood of them: ten journaled at once, then one every three
    // seconds, which says how many were refused in between.
    for _ in 0..30 {
        let wrong = api.get("/consultations", "not-a-token").await;
        assert_problem(&wrong, StatusCode::UNAUTHORIZED, "not valid");
    }
    let flood = failed_logins().await.len();
    assert!((10..=11).contains(&flood), "{flood} of 31 journaled");
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let wrong = api.get("/consultations", "not-a-token").await;
    assert_problem(&wrong, StatusCode::UNAUTHORIZED, "not valid");
    let after = failed_logins().await;
    let counted = after.last().unwrap();
    assert!(
        counted.contains(&format!("({} more since the last entry", 31 - flood)),
        "{counted}"
    );
    let resp = api
        .client
        .get(format!("{}/consultations", api.base))
        .header("authorization", "Basic cGh5czpwaHlz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Neither consent nor an emergency override.
    let mut body = new_request();
    body.as_object_mut().unwrap().remove("consent");
    let no_consent = api.post("/consultations", "phys", &body).await;
    assert_problem(&no_consent, StatusCode::UNPROCESSABLE_ENTITY, "consent");
    assert_eq!(no_consent.2["field"], "consent");
    // An override outside an emergency.
    body["emergency_override"] = json!({"reason": "unconscious"});
    let not_emergency = api.post("/consultations", "phys", &body).await;
    assert_problem(&not_emergency, StatusCode::UNPROCESSABLE_ENTITY, "emergenc");

    // Malformed JSON, unknown fields, wrong types, bad values.
    let malformed = api
        .post_raw("/consultations", "phys", r#"{"specialty": "cardiology", "#)
        .await;
    assert_problem(&malformed, StatusCode::BAD_REQUEST, "EOF");
    let mut extra = new_request();
    extra["patient_name"] = json!("Ivanov");
    let unknown = api.post("/consultations", "phys", &extra).await;
    assert_problem(&unknown, StatusCode::BAD_REQUEST, "patient_name");
    let mut typed = new_request();
    typed["consent"]["by"] = json!(42);
    let wrong_type = api.post("/consultations", "phys", &typed).await;
    assert_problem(&wrong_type, StatusCode::BAD_REQUEST, "consent.by");
    assert_eq!(wrong_type.2["field"], "consent.by");
    let mut named = new_request();
    named["consent"]["by"] = json!("Ivan Petrovich Sidorov");
    let named = api.post("/consultations", "phys", &named).await;
    assert_problem(&named, StatusCode::BAD_REQUEST, "never named");
    assert_eq!(named.2["field"], "consent.by");
    let mut slug = new_request();
    slug["specialty"] = json!("astrology");
    let bad_slug = api.post("/consultations", "phys", &slug).await;
    assert_problem(&bad_slug, StatusCode::BAD_REQUEST, "astrology");
    assert_eq!(bad_slug.2["field"], "specialty");
    let mut level = new_request();
    level["min_level"] = json!(9);
    assert_problem(
        &api.post("/consultations", "phys", &level).await,
        StatusCode::BAD_REQUEST,
        "min_level",
    );
    let mut target = new_request();
    target["target"] = json!("not-an-org");
    assert_problem(
        &api.post("/consultations", "phys", &target).await,
        StatusCode::BAD_REQUEST,
        "target",
    );

    // No one offers cardiology in a one-node federation.
    assert_problem(
        &api.post("/consultations", "phys", &new_request()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "offers",
    );

    // Actions on unknown consultations, and malformed actions.
    let unknown_id = "ab".repeat(16);
    assert_problem(
        &api.act(&unknown_id, "phys", json!({"action": "acknowledge"}))
            .await,
        StatusCode::NOT_FOUND,
        "not known",
    );
    assert_problem(
        &api.get("/consultations/xyz", "phys").await,
        StatusCode::NOT_FOUND,
        "xyz",
    );
    assert_problem(
        &api.act(&unknown_id, "phys", json!({"action": "teleport"}))
            .await,
        StatusCode::BAD_REQUEST,
        "teleport",
    );
    assert_problem(
        &api.post(
            &format!("/consultations/{unknown_id}/video"),
            "phys",
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        &unknown_id,
    );
    let missing = api
        .act(&unknown_id, "phys", json!({"action": "cancel"}))
        .await;
    assert_problem(&missing, StatusCode::BAD_REQUEST, "reason");
    assert_eq!(missing.2["field"], "reason");
    assert_problem(
        &api.get("/nowhere", "phys").await,
        StatusCode::NOT_FOUND,
        "openapi",
    );
    let resp = api
        .client
        .delete(format!("{}/consultations", api.base))
        .bearer_auth("phys")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The OpenAPI description lists every path.
    let (status, _, doc) = api.get("/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/consultations",
        "/consultations/{id}",
        "/consultations/{id}/actions",
        "/consultations/{id}/fhir",
        "/consultations/{id}/video",
        "/fhir/ServiceRequest",
        "/openapi.json",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }
    assert!(
        doc["paths"]["/consultations"]["post"]["requestBody"]["content"]["multipart/form-data"]
            .is_object()
    );
    assert_eq!(
        doc["components"]["schemas"]["ActionRequest"]["properties"]["action"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        // Every action but `fail`, which only the node takes.
        <konsilium_protocol::workflow::ActionKind as strum::IntoEnumIterator>::iter().count() - 1
    );

    // A server without users would refuse everyone: it does not start.
    assert!(matches!(
        api::serve(n.clone(), ApiConfig::default()).await,
        Err(api::ApiError::NoUsers)
    ));
    // An empty bearer token is no token.
    let resp = api
        .client
        .get(format!("{}/consultations", api.base))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A graceful stop lets go of the node, which can then shut down.
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the server stops")
        .unwrap();
    assert!(
        reqwest::get(format!("{}/openapi.json", api.base))
            .await
            .is_err(),
        "nothing listens any more"
    );
    let n = Arc::try_unwrap(n).unwrap_or_else(|_| panic!("the server let go of the node"));
    n.shutdown().await;
}
