//! The `tokenmint` command: `serve`, `bootstrap`, `signing-keys`, `audit` and `bench-fixture`.

use clap::Parser;
use std::process::ExitCode;
use tokenmint::config::{AuditCommand, Cli, Command, SigningKeysCommand};
use tokenmint::server::{self, StartError};

/// mimalloc, not the C library's malloc: with a million keys cached, glibc kept the memory that
/// loading them had freed (1,002 MiB resident against 559 with mimalloc, same load; see
/// docs/benchmarks.md), and it is faster on the exchange path too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match tokenmint::runtime::build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("tokenmint: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let args = match tokenmint::config::apply_config_file(std::env::args_os().collect(), |name| {
        std::env::var(name).ok()
    }) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("tokenmint: {e}");
            return ExitCode::from(2);
        }
    };
    let on_command_line = tokenmint::config::secrets_on_command_line(&args);
    let cli = Cli::parse_from(args);
    tokenmint::telemetry::init(cli.log_format, &cli.log_level);
    for flag in on_command_line {
        tracing::warn!(
            flag,
            "a secret passed as a flag is visible to every local user in the process list; \
             use its environment variable or its -file flag instead"
        );
    }
    match cli.command {
        Command::Serve(args) => match server::serve(args).await {
            Ok(server::Stopped::Cleanly) => ExitCode::SUCCESS,
            Ok(server::Stopped::Unfinished) => ExitCode::from(3),
            Err(e) => fail(e),
        },
        Command::Bootstrap(args) => match bootstrap(args).await {
            Ok(code) => code,
            Err(e) => fail(e),
        },
        Command::SigningKeys(command) => match signing_keys(command).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Audit(AuditCommand::Verify(args)) => match audit_verify(args).await {
            Ok(code) => code,
            Err(e) => fail(e),
        },
        Command::BenchFixture(args) => match bench_fixture(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
    }
}

fn fail(err: StartError) -> ExitCode {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %message, "tokenmint failed");
    ExitCode::FAILURE
}

async fn bootstrap(args: tokenmint::config::BootstrapArgs) -> Result<ExitCode, StartError> {
    let issuer = args
        .core
        .issuer
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let app = server::open(&args.core, issuer).await?;
    let Some(credential) = app.bootstrap().await? else {
        eprintln!("tokenmint bootstrap: refused, the database already has service users");
        return Ok(ExitCode::from(2));
    };
    if args.json {
        let json = serde_json::json!({
            "organization_id": credential.organization_id.as_str(),
            "service_user_id": credential.service_user_id.as_str(),
            "key_id": credential.key_id.as_str(),
            "secret": credential.secret.expose(),
        });
        println!("{json}");
    } else {
        println!(
            "organization_id: {}\nservice_user_id: {}\nkey_id: {}\nsecret: {}\n(the secret is shown once: store it now)",
            credential.organization_id,
            credential.service_user_id,
            credential.key_id,
            credential.secret.expose()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench_fixture(args: tokenmint::config::BenchFixtureArgs) -> Result<(), StartError> {
    let issuer = args
        .core
        .issuer
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let app = server::open(&args.core, issuer).await?;
    let spec = tokenmint::domain::fixture::FixtureSpec {
        organization_id: args.organization_id,
        service_users: args.service_users,
        keys_per_user: args.keys_per_user,
    };
    let started = std::time::Instant::now();
    let file = tokenmint::data_files::create_private_file(&args.out)?;
    let mut out = std::io::BufWriter::new(&file);
    let keys = app
        .create_benchmark_fixture(&spec, |batch| {
            use std::io::Write;
            for (id, secret) in batch {
                writeln!(out, "{id} {}", secret.expose())?;
            }
            out.flush()
        })
        .await?;
    drop(out);
    file.sync_all()
        .map_err(|e| StartError::Config(format!("{}: {e}", args.out.display())))?;
    eprintln!(
        "tokenmint bench-fixture: {} service users and {} keys in {:.1} s; keys in {}",
        spec.service_users,
        keys,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

async fn signing_keys(command: SigningKeysCommand) -> Result<(), StartError> {
    let (core, json) = match &command {
        SigningKeysCommand::List(args) => (&args.core, args.json),
        SigningKeysCommand::Rotate(args) => (&args.core, args.json),
    };
    let issuer = core
        .issuer
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let app = server::open(core, issuer).await?;
    let keys = match &command {
        SigningKeysCommand::List(_) => app.list_signing_keys().await?,
        SigningKeysCommand::Rotate(args) => vec![
            app.rotate_signing_key(&Default::default(), args.now)
                .await?,
        ],
    };
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "-".into())
    };
    if !json {
        println!(
            "{:<44} {:<6} {:<8} {:<21} {:<21} REPLACED",
            "KID", "ALG", "STATE", "CREATED", "SIGNS FROM"
        );
    }
    for k in keys {
        if json {
            let line = serde_json::json!({
                "kid": k.key.kid,
                "algorithm": k.key.algorithm,
                "state": k.state.name(),
                "create_time": time(Some(k.key.create_time)),
                "activate_time": time(Some(k.key.activate_time)),
                "replace_time": time(k.replace_time),
            });
            println!("{line}");
        } else {
            println!(
                "{:<44} {:<6} {:<8} {:<21} {:<21} {}",
                k.key.kid,
                k.key.algorithm,
                k.state.name(),
                time(Some(k.key.create_time)),
                time(Some(k.key.activate_time)),
                time(k.replace_time)
            );
        }
    }
    app.store.clone().close().await.ok();
    Ok(())
}

async fn audit_verify(args: tokenmint::config::AuditVerifyArgs) -> Result<ExitCode, StartError> {
    // Read only: no migration, no keys, nothing written.
    let store = tokenmint_store::Store::connect(&tokenmint_store::StoreOptions::new(
        server::database_url(&args.core)?,
    ))
    .await?;
    let (broken, heads) = tokenmint::domain::audit::verify_audit_chains(&store)
        .await
        .map_err(StartError::from)?;
    store.close().await.ok();
    let name = |chain: String| {
        if chain.is_empty() {
            "platform".to_owned()
        } else {
            chain
        }
    };
    for head in &heads {
        println!(
            "chain {}: {} events intact, head {} {}",
            name(head.organization_id.clone()),
            head.events,
            head.head_id,
            head.head_hash
        );
    }
    if broken.is_empty() {
        let total: u64 = heads.iter().map(|h| h.events).sum();
        println!("ok: {total} events, every chain intact");
        return Ok(ExitCode::SUCCESS);
    }
    for link in broken {
        println!(
            "broken: chain {}, first broken link {}: {}",
            name(link.organization_id),
            link.event_id,
            link.reason
        );
    }
    Ok(ExitCode::from(1))
}
