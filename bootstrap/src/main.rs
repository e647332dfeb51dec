//! `konsilium-authority`: the federation authorities' command line.
//!
//! The only place that reads the clock; everything else is in the library,
//! where it is tested with fixed times.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use konsilium_bootstrap::{
    AuthorityRequest, OrgRequest, Role, certify_authority, certify_org, init_authority,
    inspect_file, parse_authority_key, parse_sealing_key, public_key, revoke, timestamp,
};
use konsilium_protocol::cert::{OrgLevel, RegionCode};
use konsilium_protocol::identity::{AuthorityKey, OrgId, SealingPublicKey};
use konsilium_protocol::time::Timestamp;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(Parser)]
#[command(
    name = "konsilium-authority",
    version,
    about = "Federation authority tooling for Konsilium: authority keys, certificates, revocations",
    long_about = "Federation authority tooling for Konsilium.\n\n\
        A root authority's public key goes into every node's `federation.roots`. The root \
        certifies regional authorities (a region and the highest level they may grant) and \
        organizations; a regional authority certifies organizations of its region. Each \
        authority keeps its own directory: its key (0600, never overwritten), the `serials` \
        register (serials are unique per issuer) and its latest revocation list. Run this on \
        the machine that holds the keys, ideally offline.",
    after_help = "Typical flow:\n  \
        konsilium-authority root init --dir /srv/authority/root\n  \
        konsilium-authority regional init --dir /srv/authority/vologda\n  \
        konsilium-authority root certify-authority --root-dir /srv/authority/root --authority <key> \\\n      \
            --name \"Vologda regional telemedicine center\" --region RU-VLG --max-level regional \\\n      \
            --days 3650 --serial 1 --out vologda.cert\n  \
        konsilium-authority certify-org --issuer-dir /srv/authority/vologda --issuer-cert vologda.cert \\\n      \
            --org 12D3KooW... --sealing-key <64 hex> --name \"Kirillov central district hospital\" \\\n      \
            --level district --region RU-VLG --days 365 --serial 1 --out kirillov.chain\n  \
        konsilium-authority inspect kirillov.chain --root <root key>"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Root authority: create its key, certify regional authorities.
    #[command(subcommand)]
    Root(RootCommand),
    /// Regional authority: create its key.
    #[command(subcommand)]
    Regional(RegionalCommand),
    /// Certify an organization; writes the chain its node loads as `organization.certificate`.
    #[command(after_help = "Example (by a regional authority):\n  \
        konsilium-authority certify-org --issuer-dir /srv/authority/vologda --issuer-cert vologda.cert \\\n      \
            --org 12D3KooWAbc... --sealing-key 3f2a...e9 --name \"Kirillov central district hospital\" \\\n      \
            --level district --region RU-VLG --days 365 --serial 17 --out kirillov.chain\n\
        Example (by the root, no --issuer-cert):\n  \
        konsilium-authority certify-org --issuer-dir /srv/authority/root --org 12D3KooWXyz... \\\n      \
            --sealing-key 91c0...4d --name \"National medical research center of cardiology\" \\\n      \
            --level federal --region RU-MOW --days 730 --serial 5 --out nmrc-cardio.chain")]
    CertifyOrg(CertifyOrgArgs),
    /// Sign this authority's revocation list; writes the notice nodes load as `federation.revocations`.
    #[command(
        after_help = "The new list repeats every serial this authority revoked before \
        (from latest.notice in its directory), because nodes keep only the newest list.\n\n\
        Example:\n  \
        konsilium-authority revoke --issuer-dir /srv/authority/vologda --issuer-cert vologda.cert \\\n      \
            --sequence 2 --serial 17 --serial 18 --out vologda-revocations-2.notice"
    )]
    Revoke(RevokeArgs),
    /// Show what a .cert, .chain or .notice file contains, and verify it against a root.
    #[command(
        after_help = "Exits with status 1 when --root is given and the file would be refused.\n\n\
        Example:\n  \
        konsilium-authority inspect kirillov.chain --root 5b1c...a0"
    )]
    Inspect(InspectArgs),
    /// Print the public key of the authority whose key is in a directory.
    #[command(after_help = "Example:\n  konsilium-authority public-key --dir /srv/authority/root")]
    PublicKey {
        /// The authority directory (holding root.key or regional.key).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum RootCommand {
    /// Create a root authority key; prints the public key nodes list in `federation.roots`.
    #[command(after_help = "Example:\n  konsilium-authority root init --dir /srv/authority/root")]
    Init {
        /// Directory for the root's key and records (created 0700; must not hold an authority yet).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Certify a regional authority for a region, up to a level; writes its .cert file.
    #[command(after_help = "Example:\n  \
        konsilium-authority root certify-authority --root-dir /srv/authority/root \\\n      \
            --authority 8d3e...41 --name \"Vologda regional telemedicine center\" --region RU-VLG \\\n      \
            --max-level regional --days 3650 --serial 1 --out vologda.cert")]
    CertifyAuthority(CertifyAuthorityArgs),
}

#[derive(Subcommand)]
enum RegionalCommand {
    /// Create a regional authority key; prints the public key to send to the root.
    #[command(
        after_help = "Example:\n  konsilium-authority regional init --dir /srv/authority/vologda"
    )]
    Init {
        /// Directory for the authority's key and records (created 0700; must not hold an authority yet).
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Args)]
struct CertifyAuthorityArgs {
    /// The root authority's directory (holding root.key).
    #[arg(long)]
    root_dir: PathBuf,
    /// The regional authority's public key, as `regional init` printed it (64 hex).
    #[arg(long, value_parser = parse_authority_key)]
    authority: AuthorityKey,
    /// The authority's name, shown to operators.
    #[arg(long)]
    name: String,
    /// The region it may certify in, e.g. RU-VLG.
    #[arg(long)]
    region: RegionCode,
    /// The highest level it may grant: district|regional|federal or 1|2|3.
    #[arg(long)]
    max_level: OrgLevel,
    /// How long the certificate is valid, in days from now.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Serial number, unique among everything this root issues.
    #[arg(long)]
    serial: u64,
    /// Where to write the certificate (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct CertifyOrgArgs {
    /// The issuing authority's directory (root.key, or regional.key with --issuer-cert).
    #[arg(long)]
    issuer_dir: PathBuf,
    /// A regional authority's own certificate, from `root certify-authority`; omit for a root.
    #[arg(long)]
    issuer_cert: Option<PathBuf>,
    /// The organization's id (its node's peer id, 12D3KooW...), as `konsilium init` printed it.
    #[arg(long)]
    org: OrgId,
    /// The organization's sealing public key (64 hex), as `konsilium init` printed it.
    #[arg(long, value_parser = parse_sealing_key)]
    sealing_key: SealingPublicKey,
    /// The organization's name, shown to other hospitals.
    #[arg(long)]
    name: String,
    /// Level of care: district|regional|federal or 1|2|3.
    #[arg(long)]
    level: OrgLevel,
    /// The organization's region, e.g. RU-VLG.
    #[arg(long)]
    region: RegionCode,
    /// How long the certificate is valid, in days from now.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
    /// Serial number, unique among everything this authority issues.
    #[arg(long)]
    serial: u64,
    /// Where to write the chain (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct RevokeArgs {
    /// The issuing authority's directory (root.key, or regional.key with --issuer-cert).
    #[arg(long)]
    issuer_dir: PathBuf,
    /// A regional authority's own certificate, from `root certify-authority`; omit for a root.
    #[arg(long)]
    issuer_cert: Option<PathBuf>,
    /// The list's sequence number: higher than this authority's previous list.
    #[arg(long)]
    sequence: u64,
    /// A serial to revoke (repeat, or separate with commas); earlier revocations are kept.
    #[arg(long = "serial", required = true, value_delimiter = ',')]
    serials: Vec<u64>,
    /// Where to write the notice (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct InspectArgs {
    /// A .cert, .chain or .notice file.
    file: PathBuf,
    /// A root public key (64 hex) to verify the file against, as nodes will.
    #[arg(long, value_parser = parse_authority_key)]
    root: Option<AuthorityKey>,
}

fn now() -> Timestamp {
    timestamp(SystemTime::now())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Root(RootCommand::Init { dir }) => init(&dir, Role::Root),
        Command::Regional(RegionalCommand::Init { dir }) => init(&dir, Role::Regional),
        Command::Root(RootCommand::CertifyAuthority(args)) => certify_authority_cmd(args),
        Command::CertifyOrg(args) => certify_org_cmd(args),
        Command::Revoke(args) => revoke_cmd(args),
        Command::Inspect(args) => {
            let inspection = inspect_file(&args.file, args.root, now())?;
            print!("{}", inspection.report);
            Ok(match inspection.verification {
                Some(Err(_)) => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
        Command::PublicKey { dir } => {
            let (_, key) = public_key(&dir)?;
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The key alone goes to stdout, so `ROOT=$(konsilium-authority root init ...)`
/// works; the explanation goes to stderr.
fn init(dir: &Path, role: Role) -> anyhow::Result<ExitCode> {
    let key = init_authority(dir, role)?;
    println!("{key}");
    let file = role.key_file();
    let next = match role {
        Role::Root => "put this public key in every node's `federation.roots`",
        Role::Regional => {
            "send this public key to the root authority for `root certify-authority --authority`"
        }
    };
    eprintln!(
        "created the {role} authority in {}: {file} (secret, 0600: back it up offline) and the \
         serials register; {next}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn certify_authority_cmd(args: CertifyAuthorityArgs) -> anyhow::Result<ExitCode> {
    let cert = certify_authority(
        &args.root_dir,
        AuthorityRequest {
            authority: args.authority,
            name: args.name,
            region: args.region,
            max_level: args.max_level,
            days: args.days,
            serial: args.serial,
        },
        now(),
        &args.out,
    )
    .with_context(|| format!("cannot certify authority {}", args.authority))?;
    println!(
        "wrote {}: {:?} ({}) may certify organizations in {} up to level {}, valid {} to {}, serial {}",
        args.out.display(),
        cert.name,
        cert.authority,
        cert.scope.region,
        cert.scope.max_level,
        cert.validity.from,
        cert.validity.until,
        cert.serial
    );
    eprintln!("give this file to the regional authority: it passes it as --issuer-cert");
    Ok(ExitCode::SUCCESS)
}

fn certify_org_cmd(args: CertifyOrgArgs) -> anyhow::Result<ExitCode> {
    let cert = certify_org(
        &args.issuer_dir,
        args.issuer_cert.as_deref(),
        OrgRequest {
            org: args.org,
            name: args.name,
            level: args.level,
            region: args.region,
            sealing_key: args.sealing_key,
            days: args.days,
            serial: args.serial,
        },
        now(),
        &args.out,
    )
    .with_context(|| format!("cannot certify organization {}", args.org))?;
    println!(
        "wrote {}: {:?} ({}) certified as {} level in {}, valid {} to {}, serial {}",
        args.out.display(),
        cert.name,
        cert.org,
        cert.level,
        cert.region,
        cert.validity.from,
        cert.validity.until,
        cert.serial
    );
    eprintln!(
        "give this file to the organization: its node's config names it as organization.certificate"
    );
    Ok(ExitCode::SUCCESS)
}

fn revoke_cmd(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let serials: BTreeSet<u64> = args.serials.into_iter().collect();
    let revocation = revoke(
        &args.issuer_dir,
        args.issuer_cert.as_deref(),
        args.sequence,
        &serials,
        now(),
        &args.out,
    )
    .context("cannot sign the revocation list")?;
    let list = &revocation.list;
    let join = |set: &BTreeSet<u64>| {
        set.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added = if revocation.added.is_empty() {
        "none".to_owned()
    } else {
        join(&revocation.added)
    };
    println!(
        "wrote {}: revocation list {} of {}, revoking serial(s) {} (newly revoked: {added})",
        args.out.display(),
        list.sequence,
        list.issuer,
        join(&list.revoked),
    );
    eprintln!(
        "distribute this file to every node (federation.revocations); it replaces this \
         authority's previous list"
    );
    Ok(ExitCode::SUCCESS)
}
