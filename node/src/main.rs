//! `konsilium`: run a node, run the demo.

mod demo;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "konsilium",
    version,
    about = "Konsilium: federated peer-to-peer telemedicine consultations between medical organizations"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a local federation on loopback and a consultation package end to end.
    ///
    /// Example: konsilium demo --attachment-mb 20
    Demo {
        /// Size of the package's attachment in MiB.
        #[arg(long, default_value_t = 20)]
        attachment_mb: usize,
        /// Keep the nodes' data directories afterwards.
        #[arg(long)]
        keep: bool,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Demo {
            attachment_mb,
            keep,
        } => {
            demo::run(demo::DemoOptions {
                attachment_mb,
                keep,
            })
            .await
        }
    }
}
