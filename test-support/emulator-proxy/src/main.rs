#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod classify;
mod control;
mod events;
mod faults;
mod jobs;
mod list_query;
mod local;
mod mediaconvert;
mod outputs;
mod proxy;
mod publish;
mod reply;
mod state;
mod timeline;
mod upstream;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::Uri;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::EnvFilter;

use crate::proxy::App;
use crate::upstream::Upstream;

/// Test proxy in front of the fakecloud AWS emulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on, such as 127.0.0.1:4567; port 0 picks a free port.
    #[arg(long, env = "EMULATOR_PROXY_LISTEN")]
    listen: SocketAddr,

    /// Base URL of the emulator, such as http://127.0.0.1:4566 (plain HTTP only).
    #[arg(long, env = "EMULATOR_PROXY_UPSTREAM", value_parser = parse_upstream)]
    upstream: Uri,

    /// Seconds during which a repeated CreateJob clientRequestToken returns
    /// the first job instead of creating another.
    #[arg(long, env = "EMULATOR_PROXY_TOKEN_WINDOW_SECS", default_value_t = 60)]
    token_window_secs: u64,

    /// Serve MediaConvert's CreateJob, GetJob, ListJobs, SearchJobs, CancelJob
    /// and DescribeEndpoints from memory instead of forwarding them.
    #[arg(long, env = "EMULATOR_PROXY_LOCAL_JOBS")]
    local_jobs: bool,

    /// Publish job state change events to the upstream EventBridge for every
    /// scripted job, not only for those whose timeline sets publishEvents.
    #[arg(long, env = "EMULATOR_PROXY_PUBLISH_JOB_EVENTS")]
    publish_job_events: bool,
}

fn parse_upstream(value: &str) -> Result<Uri, String> {
    let uri: Uri = value
        .parse()
        .map_err(|error| format!("invalid URL: {error}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("expected http://HOST:PORT".to_string());
    }
    Ok(uri)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();

    let listener = match TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %cli.listen, "Failed to bind listen address");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listen = listener.local_addr().unwrap_or(cli.listen);
    let app = Arc::new(App {
        shared: Default::default(),
        upstream: Upstream::new(cli.upstream.clone()),
        token_window: Duration::from_secs(cli.token_window_secs),
        listen,
        local_jobs: cli.local_jobs,
        publish_all_events: cli.publish_job_events,
    });
    tokio::spawn(publish::run(app.clone()));

    // Scripts wait for this exact line on stdout before sending requests.
    println!("listening on {listen}");
    tracing::info!(%listen, upstream = %cli.upstream, token_window_secs = cli.token_window_secs,
        local_jobs = cli.local_jobs, publish_job_events = cli.publish_job_events, "Proxy started");

    serve(listener, app).await;
    tracing::info!("Proxy stopped");
    std::process::ExitCode::SUCCESS
}

/// Accepts connections until SIGINT or SIGTERM.
async fn serve(listener: TcpListener, app: Arc<App>) {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, app.clone()));
                }
                Err(error) => {
                    // Errors such as EMFILE repeat at once, so pause instead of spinning.
                    tracing::warn!(%error, "Failed to accept connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

async fn serve_connection(stream: TcpStream, app: Arc<App>) {
    let service = service_fn(move |request| {
        let app = app.clone();
        async move { proxy::handle(&app, request).await }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "Connection closed with an error");
    }
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "Failed to install SIGTERM handler");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("Shutdown signal received");
}
