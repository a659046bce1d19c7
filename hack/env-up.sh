#!/usr/bin/env bash
# Starts the local test environment on loopback: etcd, kube-apiserver with
# RBAC and a token-authenticated admin in system:masters, the fakecloud AWS
# emulator, and emulator-proxy in front of fakecloud. Then writes an env file
# of `export` lines that point kubectl, the operator and the AWS SDKs at it.
#
# There is no kube-controller-manager, so nothing creates ServiceAccount
# tokens or the `default` ServiceAccount, nothing finishes deleting a
# namespace (it stays Terminating), and nothing garbage-collects objects by
# ownerReferences. TokenRequest works for ServiceAccounts a test creates.
#
# State lives in MCO_ENV_DIR (default target/local-env): etcd and fakecloud
# data, certificates and the admin token, logs, pid files. Data and
# credentials are kept across restarts until `hack/env-down.sh --purge`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env-lib.sh"

AWS_TEST_REGION=us-east-1
AWS_TEST_ACCOUNT_ID=111122223333
# Issuer and audience of ServiceAccount tokens, as in a default cluster.
SERVICE_ACCOUNT_ISSUER=https://kubernetes.default.svc.cluster.local
KUBECONFIG_FILE="$MCO_ENV_DIR/kubeconfig"

usage() {
    cat <<EOF
Usage: hack/env-up.sh [--replace] [--local-jobs] [ENV_FILE]

Starts etcd, kube-apiserver, fakecloud and emulator-proxy on free loopback
ports and writes ENV_FILE (default $DEFAULT_ENV_FILE) for \`source\`.

  --replace     stop a running environment first instead of failing
  --local-jobs  let the proxy keep MediaConvert jobs itself instead of in fakecloud,
                whose ListJobs slows down as jobs pile up over a test run
  -h, --help    print this help

Environment:
  MCO_ENV_DIR            state, logs and pid files (now $MCO_ENV_DIR)
  MCO_ENV_START_TIMEOUT  seconds each component has to become ready (default 120)
  MCO_ENV_STOP_TIMEOUT   seconds --replace waits after SIGTERM (default 15)
EOF
}

require_tools() {
    local tool
    for tool in "$ETCD_BIN_DIR/etcd" "$KUBE_BIN_DIR/kube-apiserver" "$KUBE_BIN_DIR/kubectl" \
        "$FAKECLOUD_BIN" "$HELM_BIN"; do
        [[ -x $tool ]] || die "$tool not found; build it with hack/install-tools.sh"
    done
    for tool in cargo curl flock openssl python3 setsid; do
        command -v "$tool" >/dev/null || die "$tool not found in PATH"
    done
}

# Fails if a component is already running, unless --replace is given to stop them first.
handle_running_environment() {
    local replace=$1 running
    running="$(running_components | paste -sd ' ')"
    [[ -n $running ]] || return 0
    if [[ $replace != true ]]; then
        die "an environment is already running in $MCO_ENV_DIR ($running);" \
            "stop it with hack/env-down.sh or pass --replace"
    fi
    log "replacing the running environment ($running)"
    stop_environment || die "failed to stop the running environment"
}

# Stops what this run started unless it finished, so a failed start leaves no
# processes behind for the next run to trip over. The logs stay.
stop_on_failure() {
    local status=$?
    if ((status != 0)); then
        log "env-up did not finish; stopping the components it started"
        stop_environment || true
    fi
}

# Runs a command with its output captured, and prints that output only if the
# command fails, because openssl writes progress noise on stderr.
run_quietly() {
    local output
    if ! output="$("$@" 2>&1)"; then
        printf '%s\n' "$output" >&2
        die "failed to run: $*"
    fi
}

# Creates the certificate authority and the API server's serving certificate,
# valid for 127.0.0.1, ::1 and localhost, unless both exist and are valid for
# at least another day.
ensure_serving_certificates() {
    local ca="$ENV_PKI_DIR/ca" server="$ENV_PKI_DIR/kube-apiserver"
    if openssl x509 -checkend 86400 -noout -in "$ca.crt" >/dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$server.crt" >/dev/null 2>&1; then
        return
    fi
    log "creating a certificate authority and a serving certificate in $ENV_PKI_DIR"
    run_quietly openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -days 365 -subj "/CN=mediaconvert-operator local CA" -keyout "$ca.key" -out "$ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    run_quietly openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=kube-apiserver" -keyout "$server.key" -out "$server.csr"
    run_quietly openssl x509 -req -in "$server.csr" -CA "$ca.crt" -CAkey "$ca.key" \
        -CAcreateserial -days 365 -out "$server.crt" -extfile <(
            echo "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
            echo "basicConstraints=critical,CA:FALSE"
            echo "keyUsage=critical,digitalSignature"
            echo "extendedKeyUsage=serverAuth"
        )
    rm -f "$server.csr"
}

# Creates, unless they exist, the key pair that signs and verifies
# ServiceAccount tokens and the admin bearer token. Writes the token into the
# API server's token-auth file and into a header file for curl.
ensure_credentials() {
    local sa_key="$ENV_PKI_DIR/service-account"
    if [[ ! -f $sa_key.key || ! -f $sa_key.pub ]]; then
        run_quietly openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$sa_key.key"
        run_quietly openssl pkey -in "$sa_key.key" -pubout -out "$sa_key.pub"
    fi
    if [[ ! -f $ENV_PKI_DIR/admin-token ]]; then
        openssl rand -hex 32 >"$ENV_PKI_DIR/admin-token"
    fi
    local token
    token="$(cat "$ENV_PKI_DIR/admin-token")"
    # Columns: token, user name, user uid, groups.
    printf '%s,mco-admin,mco-admin,"system:masters"\n' "$token" >"$ENV_PKI_DIR/tokens.csv"
    printf 'Authorization: Bearer %s\n' "$token" >"$ENV_PKI_DIR/admin-token.header"
}

ensure_pki() {
    mkdir -p "$ENV_PKI_DIR"
    chmod 700 "$ENV_PKI_DIR"
    ensure_serving_certificates
    ensure_credentials
}

# Builds the proxy before anything starts, so a failed build leaves nothing
# running and no readiness deadline has to cover a cold build.
build_emulator_proxy() {
    log "building emulator-proxy"
    (cd "$REPO_ROOT" && cargo build -p emulator-proxy --quiet) ||
        die "failed to build emulator-proxy"
    local target_dir
    target_dir="$(cd "$REPO_ROOT" && cargo metadata --no-deps --format-version 1 |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    EMULATOR_PROXY_BIN="$target_dir/debug/emulator-proxy"
    [[ -x $EMULATOR_PROXY_BIN ]] || die "emulator-proxy not found at $EMULATOR_PROXY_BIN after the build"
}

curl_local() {
    curl --fail --silent --show-error --noproxy '*' --max-time 2 "$@"
}

launch_etcd() {
    local ports client_port peer_port
    ports="$(pick_free_ports 2)"
    read -r client_port peer_port <<<"$ports"
    ETCD_URL="http://127.0.0.1:$client_port"
    local peer_url="http://127.0.0.1:$peer_port"
    launch_component etcd "$ETCD_BIN_DIR/etcd" \
        --name=mco-local \
        --data-dir="$MCO_ENV_DIR/etcd-data" \
        --listen-client-urls="$ETCD_URL" \
        --advertise-client-urls="$ETCD_URL" \
        --listen-peer-urls="$peer_url" \
        --initial-advertise-peer-urls="$peer_url" \
        --initial-cluster="mco-local=$peer_url" \
        --unsafe-no-fsync
}

etcd_is_healthy() {
    curl_local "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'
}

# ServiceAccount admission is off because it rejects pods until the controller
# manager has created the namespace's `default` ServiceAccount.
launch_kube_apiserver() {
    local port
    port="$(pick_free_ports 1)"
    APISERVER_URL="https://127.0.0.1:$port"
    launch_component kube-apiserver "$KUBE_BIN_DIR/kube-apiserver" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$port" \
        --etcd-servers="$ETCD_URL" \
        --tls-cert-file="$ENV_PKI_DIR/kube-apiserver.crt" \
        --tls-private-key-file="$ENV_PKI_DIR/kube-apiserver.key" \
        --client-ca-file="$ENV_PKI_DIR/ca.crt" \
        --token-auth-file="$ENV_PKI_DIR/tokens.csv" \
        --authorization-mode=RBAC \
        --service-account-issuer="$SERVICE_ACCOUNT_ISSUER" \
        --api-audiences="$SERVICE_ACCOUNT_ISSUER" \
        --service-account-key-file="$ENV_PKI_DIR/service-account.pub" \
        --service-account-signing-key-file="$ENV_PKI_DIR/service-account.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --disable-admission-plugins=ServiceAccount \
        --profiling=false
}

curl_apiserver() {
    curl_local --cacert "$ENV_PKI_DIR/ca.crt" --header "@$ENV_PKI_DIR/admin-token.header" \
        "$APISERVER_URL$1"
}

# /readyz passes once the RBAC bootstrap roles exist. The `default` namespace
# comes from a controller inside the API server, and /readyz only waits for
# that controller to start.
kube_apiserver_is_ready() {
    curl_apiserver /readyz >/dev/null 2>&1 &&
        curl_apiserver /api/v1/namespaces/default >/dev/null 2>&1
}

# Persistent storage keeps fakecloud's state in MCO_ENV_DIR across restarts,
# as etcd's is. TMPDIR keeps its scratch files there too. The account id is the
# one the examples and tests name in their ARNs.
launch_fakecloud() {
    local port
    port="$(pick_free_ports 1)"
    FAKECLOUD_URL="http://127.0.0.1:$port"
    mkdir -p "$MCO_ENV_DIR/fakecloud-tmp"
    launch_component fakecloud env TMPDIR="$MCO_ENV_DIR/fakecloud-tmp" "$FAKECLOUD_BIN" \
        --addr="127.0.0.1:$port" \
        --region="$AWS_TEST_REGION" \
        --account-id="$AWS_TEST_ACCOUNT_ID" \
        --storage-mode=persistent \
        --data-path="$MCO_ENV_DIR/fakecloud-data"
}

fakecloud_is_healthy() {
    curl_local "$FAKECLOUD_URL/_fakecloud/health" >/dev/null 2>&1
}

# Port 0 makes the proxy bind a free port itself, so no other program can take
# the port first. The proxy then prints `listening on ADDR` on stdout.
launch_emulator_proxy() {
    local extra=()
    [[ $LOCAL_JOBS == true ]] && extra+=(--local-jobs)
    launch_component emulator-proxy "$EMULATOR_PROXY_BIN" \
        --listen 127.0.0.1:0 --upstream "$FAKECLOUD_URL" "${extra[@]}"
}

emulator_proxy_is_listening() {
    grep -q '^listening on ' "$ENV_LOG_DIR/emulator-proxy.log"
}

read_emulator_proxy_url() {
    local address
    address="$(sed -n 's/^listening on //p' "$ENV_LOG_DIR/emulator-proxy.log" | head -n 1)"
    PROXY_URL="http://$address"
}

# Launches a component and waits until READY_CHECK passes. A component that
# exits because another program took its port in the meantime is launched
# again on new ports, up to 3 attempts in all.
# Usage: start_component NAME LAUNCH_FUNCTION READY_CHECK
start_component() {
    local name=$1 launch=$2 ready_check=$3 attempt status started=$SECONDS
    for attempt in 1 2 3; do
        "$launch"
        status=0
        wait_until_ready "$name" "$ready_check" || status=$?
        if ((status == 0)); then
            log "$name is ready after $((SECONDS - started))s"
            return
        fi
        if ((status == 1 && attempt < 3)) &&
            grep -qi 'address already in use' "$ENV_LOG_DIR/$name.log"; then
            log "$name could not bind its port; retrying on another"
            continue
        fi
        print_log_tail "$name"
        if ((status == 1)); then
            die "$name exited before it was ready; see $ENV_LOG_DIR/$name.log"
        fi
        die "timed out after ${MCO_ENV_START_TIMEOUT}s waiting for $name to become ready;" \
            "see $ENV_LOG_DIR/$name.log, or raise MCO_ENV_START_TIMEOUT on a slow machine"
    done
}

write_kubeconfig() {
    local ca_data token
    ca_data="$(base64 -w0 <"$ENV_PKI_DIR/ca.crt")"
    token="$(cat "$ENV_PKI_DIR/admin-token")"
    (
        umask 077
        cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: mco-local
    cluster:
      server: $APISERVER_URL
      certificate-authority-data: $ca_data
users:
  - name: mco-admin
    user:
      token: $token
contexts:
  - name: mco-local
    context:
      cluster: mco-local
      user: mco-admin
      namespace: default
current-context: mco-local
EOF
    )
}

export_line() {
    printf 'export %s=%q\n' "$1" "$2"
}

# Writes to a temporary file first so a reader never sources half of it.
write_env_file() {
    local env_file=$1 content
    content="$(
        echo "# Local test environment from hack/env-up.sh; stop it with hack/env-down.sh."
        export_line MCO_ENV_DIR "$MCO_ENV_DIR"
        export_line KUBECONFIG "$KUBECONFIG_FILE"
        export_line MCO_KUBE_BIN_DIR "$KUBE_BIN_DIR"
        export_line MCO_ETCD_BIN_DIR "$ETCD_BIN_DIR"
        export_line MCO_HELM_BIN "$HELM_BIN"
        export_line MCO_FAKECLOUD_URL "$FAKECLOUD_URL"
        export_line MCO_PROXY_URL "$PROXY_URL"
        export_line AWS_ENDPOINT_URL "$PROXY_URL"
        export_line AWS_REGION "$AWS_TEST_REGION"
        export_line AWS_DEFAULT_REGION "$AWS_TEST_REGION"
        # fakecloud's reserved root identity, which passes signature and IAM checks.
        export_line AWS_ACCESS_KEY_ID test
        export_line AWS_SECRET_ACCESS_KEY test
        # Keeps SDKs from asking an instance metadata endpoint for anything.
        export_line AWS_EC2_METADATA_DISABLED true
        # shellcheck disable=SC2016 # $PATH expands when the file is sourced.
        printf 'export PATH=%q:"$PATH"\n' "$KUBE_BIN_DIR"
    )"
    mkdir -p "$(dirname "$env_file")"
    printf '%s\n' "$content" >"$env_file.tmp"
    mv "$env_file.tmp" "$env_file"
}

print_usage_hint() {
    local env_file=$1
    cat <<EOF
Local test environment is running (started in ${SECONDS}s):
  kube-apiserver  $APISERVER_URL
  fakecloud       $FAKECLOUD_URL
  emulator-proxy  $PROXY_URL
Use it with:
  source $env_file
  kubectl get namespaces
Logs are in $ENV_LOG_DIR. Stop it with hack/env-down.sh (--purge also deletes its data).
EOF
}

LOCAL_JOBS=false

main() {
    local replace=false env_file=""
    while (($# > 0)); do
        case $1 in
        --replace) replace=true ;;
        --local-jobs) LOCAL_JOBS=true ;;
        -h | --help) usage && exit 0 ;;
        -*) usage >&2 && die "unknown option '$1'" ;;
        *)
            [[ -z $env_file ]] || die "expected at most one ENV_FILE, got '$env_file' and '$1'"
            env_file=$1
            ;;
        esac
        shift
    done
    env_file="$(realpath -m "${env_file:-$DEFAULT_ENV_FILE}")"

    require_tools
    acquire_env_lock
    handle_running_environment "$replace"
    trap stop_on_failure EXIT
    trap 'exit 130' INT TERM

    ensure_pki
    build_emulator_proxy
    start_component etcd launch_etcd etcd_is_healthy
    start_component kube-apiserver launch_kube_apiserver kube_apiserver_is_ready
    write_kubeconfig
    start_component fakecloud launch_fakecloud fakecloud_is_healthy
    start_component emulator-proxy launch_emulator_proxy emulator_proxy_is_listening
    read_emulator_proxy_url

    write_env_file "$env_file"
    print_usage_hint "$env_file"
}

main "$@"
