//! Test harness: a fakecloud process and an emulator-proxy in front of it,
//! both on free loopback ports, plus request helpers.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

/// SigV4-shaped Authorization header for MediaConvert. fakecloud routes by the
/// credential scope and does not check the signature.
pub const MEDIACONVERT_AUTH: &str = "AWS4-HMAC-SHA256 \
    Credential=test/20260101/us-east-1/mediaconvert/aws4_request, \
    SignedHeaders=host, Signature=0";

/// Maximum wait for a child process's ready line, generous because fakecloud
/// is a large debug build and test machines may be busy.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// A running proxy, with or without a fakecloud behind it, stopped on drop.
pub struct Stack {
    fakecloud: Option<Child>,
    proxy: Child,
    pub proxy_url: String,
    pub logs: PathBuf,
    client: reqwest::Client,
}

/// An HTTP response with its body parsed as JSON (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Stack {
    /// Starts fakecloud and the proxy; `proxy_args` are added to the proxy's
    /// command line. `name` names the log directory.
    pub fn start(name: &str, proxy_args: &[&str]) -> Self {
        let logs = log_directory(name);
        let mut fakecloud = Command::new(fakecloud_bin());
        fakecloud.args(["--addr", "127.0.0.1:0", "--log-level", "warn"]);
        let (fakecloud, port_line) =
            spawn_until_line(fakecloud, &logs.join("fakecloud"), "FAKECLOUD_PORT=");
        let port = port_line.trim_start_matches("FAKECLOUD_PORT=").trim();
        let upstream = format!("http://127.0.0.1:{port}");
        Self::start_proxy(logs, Some(fakecloud), &upstream, proxy_args)
    }

    /// Starts the proxy alone, with an upstream address where nothing
    /// listens, for tests of behaviour that must not reach fakecloud, such as
    /// the local job store.
    pub fn start_without_upstream(name: &str, proxy_args: &[&str]) -> Self {
        let logs = log_directory(name);
        // Binding and dropping a listener yields a loopback port that refuses connections.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("failed to find a free loopback port");
        let upstream = format!("http://{closed}");
        Self::start_proxy(logs, None, &upstream, proxy_args)
    }

    fn start_proxy(
        logs: PathBuf,
        fakecloud: Option<Child>,
        upstream: &str,
        proxy_args: &[&str],
    ) -> Self {
        let mut proxy = Command::new(env!("CARGO_BIN_EXE_emulator-proxy"));
        proxy.args(["--listen", "127.0.0.1:0", "--upstream", upstream]);
        proxy.args(proxy_args);
        proxy.env("RUST_LOG", "debug");
        let (proxy, ready_line) = spawn_until_line(proxy, &logs.join("proxy"), "listening on ");
        let address = ready_line.trim_start_matches("listening on ").trim();

        Self {
            fakecloud,
            proxy,
            proxy_url: format!("http://{address}"),
            logs,
            client: reqwest::Client::new(),
        }
    }

    /// Returns the proxy's process id.
    pub fn proxy_pid(&self) -> u32 {
        self.proxy.id()
    }

    /// Sends an awsJson request, such as SQS or EventBridge, through the
    /// proxy to `X-Amz-Target` `target`, checks for 200 and returns the body.
    pub async fn aws_json(&self, service: &str, target: &str, body: Value) -> Value {
        let authorization =
            MEDIACONVERT_AUTH.replacen("/mediaconvert/", &format!("/{service}/"), 1);
        let content_type = if service == "sqs" {
            "application/x-amz-json-1.0"
        } else {
            "application/x-amz-json-1.1"
        };
        let request = self
            .client
            .post(format!("{}/", self.proxy_url))
            .header("authorization", authorization)
            .header("x-amz-target", target)
            .header("content-type", content_type)
            .body(body.to_string());
        let reply = into_reply(request.send().await.expect("request to the proxy failed")).await;
        assert_eq!(reply.status, StatusCode::OK, "{target}: {:?}", reply.body);
        reply.body
    }

    /// Sends a MediaConvert REST request through the proxy.
    pub async fn mediaconvert(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.mediaconvert_as("test", method, path, body).await
    }

    /// Sends a MediaConvert REST request signed with `access_key_id`.
    pub async fn mediaconvert_as(
        &self,
        access_key_id: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("{}{path}", self.proxy_url);
        let authorization = MEDIACONVERT_AUTH.replacen(
            "Credential=test/",
            &format!("Credential={access_key_id}/"),
            1,
        );
        let mut request = self
            .client
            .request(method, url)
            .header("authorization", authorization);
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request to the proxy failed")).await
    }

    /// Sends a control API request to the proxy.
    pub async fn control(&self, method: Method, route: &str, body: Option<Value>) -> Reply {
        let url = format!("{}/__proxy/{route}", self.proxy_url);
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("control request failed")).await
    }

    /// Replaces the timeline configuration and checks that the proxy accepted it.
    pub async fn set_timelines(&self, config: Value) {
        let reply = self.control(Method::PUT, "timelines", Some(config)).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "PUT timelines: {:?}",
            reply.body
        );
    }

    /// Replaces the fault rules and checks that the proxy accepted them.
    pub async fn set_faults(&self, config: Value) {
        let reply = self.control(Method::PUT, "faults", Some(config)).await;
        assert_eq!(reply.status, StatusCode::OK, "PUT faults: {:?}", reply.body);
    }

    /// Sends CreateJob and returns the reply.
    pub async fn create_job(&self, user_metadata: Value, token: Option<&str>) -> Reply {
        let mut body = job_request(user_metadata);
        if let Some(token) = token {
            body["clientRequestToken"] = json!(token);
        }
        self.mediaconvert(Method::POST, "/2017-08-29/jobs", Some(body))
            .await
    }

    /// Sends CreateJob, checks for 201 and returns the job id.
    pub async fn create_job_id(&self, user_metadata: Value, token: Option<&str>) -> String {
        let reply = self.create_job(user_metadata, token).await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "CreateJob: {:?}",
            reply.body
        );
        job_id(&reply.body["job"])
    }

    /// Sends GetJob, checks for 200 and returns the job.
    pub async fn get_job(&self, id: &str) -> Value {
        let path = format!("/2017-08-29/jobs/{id}");
        let reply = self.mediaconvert(Method::GET, &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GetJob {id}: {:?}",
            reply.body
        );
        reply.body["job"].clone()
    }

    /// Sends ListJobs with `query`, checks for 200 and returns the body.
    pub async fn list_jobs(&self, query: &str) -> Value {
        let path = format!("/2017-08-29/jobs{query}");
        let reply = self.mediaconvert(Method::GET, &path, None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "ListJobs {query}: {:?}",
            reply.body
        );
        reply.body
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.proxy).chain(self.fakecloud.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_directory(name: &str) -> PathBuf {
    let logs = std::env::temp_dir()
        .join("emulator-proxy-tests")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("failed to create the test log directory");
    logs
}

/// Returns the fakecloud binary from `FAKECLOUD_BIN` or the tool cache, and
/// panics when it is missing, because these tests need the real emulator.
fn fakecloud_bin() -> PathBuf {
    let path = match std::env::var_os("FAKECLOUD_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home)
                .join(".cache/mediaconvert-operator/tools/fakecloud-0.51.0/bin/fakecloud")
        }
    };
    assert!(
        path.is_file(),
        "fakecloud binary not found at {}; build it with `cargo install fakecloud --version \
         0.51.0 --root ~/.cache/mediaconvert-operator/tools/fakecloud-0.51.0` or set FAKECLOUD_BIN",
        path.display()
    );
    path
}

/// Spawns `command` with stdout piped and stderr in `<log>.stderr.log`, and
/// waits for the first stdout line starting with `prefix`. The remaining
/// stdout goes to `<log>.stdout.log`, so the pipe never fills.
fn spawn_until_line(mut command: Command, log: &std::path::Path, prefix: &str) -> (Child, String) {
    let stderr = File::create(log.with_extension("stderr.log")).expect("failed to create log");
    let mut stdout_log =
        File::create(log.with_extension("stdout.log")).expect("failed to create log");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {command:?}: {error}"));

    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = mpsc::channel();
    let prefix_owned = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = writeln!(stdout_log, "{line}");
            if line.starts_with(&prefix_owned) {
                let _ = sender.send(line);
            }
        }
    });

    match receiver.recv_timeout(STARTUP_TIMEOUT) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!(
                "{command:?} did not print a line starting with {prefix:?} within {STARTUP_TIMEOUT:?} \
                 (exit status {status:?}); see {}",
                log.with_extension("stderr.log").display()
            );
        }
    }
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .expect("failed to read response body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// Builds a CreateJob body with one file output group of an MP4 and a MOV output.
pub fn job_request(user_metadata: Value) -> Value {
    json!({
        "role": "arn:aws:iam::123456789012:role/MediaConvertRole",
        "userMetadata": user_metadata,
        "settings": {
            "inputs": [{"fileInput": "s3://media-in/uploads/lecture.mov"}],
            "outputGroups": [{
                "name": "File Group",
                "outputGroupSettings": {
                    "type": "FILE_GROUP_SETTINGS",
                    "fileGroupSettings": {"destination": "s3://media-out/renditions/"},
                },
                "outputs": [
                    {"nameModifier": "_1080p", "containerSettings": {"container": "MP4"}},
                    {"nameModifier": "_mezzanine", "containerSettings": {"container": "MOV"}},
                ],
            }],
        },
    })
}

pub fn job_id(job: &Value) -> String {
    job["id"]
        .as_str()
        .unwrap_or_else(|| panic!("job has no id: {job}"))
        .to_string()
}
