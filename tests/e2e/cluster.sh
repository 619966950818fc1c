#!/usr/bin/env bash
# The single-node cluster of the end-to-end test: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy, containerd (runc, CNI bridge) and kubelet, all real, on this machine.
#   tests/e2e/cluster.sh up     build/cache what is missing, generate certificates, start it all
#   tests/e2e/cluster.sh down   stop it all, remove the state (images stay cached)
# Settings that the sandbox needs are explained in docs/e2e.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pki=$E2E_STATE/pki

node_ip() {
  local ip
  ip=$(ip -4 -o addr show scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | grep -v '^10\.21[56]\.' | head -1)
  echo "${ip:-127.0.0.1}"
}

# --- certificates and kubeconfigs (openssl) --------------------------------------------------
# cert NAME CN O [SAN]: a key and a certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 o=$3 san=${4:-}
  local subj="/CN=$cn"
  [[ -n $o ]] && subj="/O=$o/CN=$cn"
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $san ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

kubeconfig() { # NAME (uses NAME.crt/NAME.key)
  cat >"$pki/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    certificate-authority: $pki/ca.crt
    server: https://127.0.0.1:$E2E_APISERVER_PORT
users:
- name: $1
  user:
    client-certificate: $pki/$1.crt
    client-key: $pki/$1.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $1}
current-context: e2e
KC
}

gen_pki() {
  [[ -f $pki/admin.kubeconfig ]] && return 0
  local ip=$1
  mkdir -p "$pki"
  openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=gpu-slicer-e2e-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$ip,IP:$E2E_SERVICE_IP"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kube-proxy system:kube-proxy system:node-proxier
  cert kubelet "system:node:$E2E_NODE" system:nodes
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  for n in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$n"; done
}

# --- containerd ---------------------------------------------------------------------------
containerd_config() {
  mkdir -p "$E2E_STATE/containerd" "$E2E_STATE/cni/net.d" "$E2E_STATE/run"
  cat >"$E2E_STATE/containerd/config.toml" <<TOML
version = 2
root = "$E2E_STATE/containerd/root"
state = "$E2E_STATE/containerd/state"
[grpc]
  address = "$E2E_STATE/run/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$E2E_PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE in the sandbox: runc cannot set the negative oom_score_adj the kubelet
  # asks for (pod sandboxes: -998) and container creation fails with "can't get final child's PID
  # from pipe: EOF". This clamps it to containerd's own (docs/e2e.md).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$E2E_STATE/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$E2E_STATE/containerd/opt"
TOML
  cat >"$E2E_STATE/cni/net.d/10-e2e.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$E2E_BRIDGE", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$E2E_POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$E2E_STATE/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
}

kubelet_config() {
  mkdir -p "$E2E_STATE/kubelet"
  cat >"$E2E_STATE/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$E2E_STATE/run/containerd.sock
# The sandbox: cgroup v1 only and no systemd (docs/e2e.md). Pod cgroups stay on (cgroupsPerQOS):
# the arbiter tells pods apart by the pod<uid> in a client's cgroup path.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Do not evict the test's pods because a shared build machine's disk is busy.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
healthzPort: 10248
port: 10250
readOnlyPort: 0
resolvConf: /etc/resolv.conf
registerNode: true
# Quicker status updates than the defaults: the test waits on them.
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
YAML
}

up() {
  [[ $(id -u) == 0 ]] || e2e_die "run as root (containers, mounts, network namespaces)"
  local kbin ip
  kbin=$("$e2e_here/build-kube.sh" | tail -1)
  mkdir -p "$E2E_STATE/bin"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    ln -sf "$kbin/$b" "$E2E_STATE/bin/$b"
  done
  for t in containerd runc ctr etcd openssl iptables; do
    command -v "$t" >/dev/null || missing_pkgs=1
  done
  if [[ -n ${missing_pkgs:-} || ! -x /usr/lib/cni/bridge ]]; then
    e2e_log "installing containerd, runc, CNI plugins, etcd (Debian packages)"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends containerd runc containernetworking-plugins etcd-server openssl iptables >/dev/null
  fi
  ip=$(node_ip)
  gen_pki "$ip"
  echo "$ip" >"$E2E_STATE/node-ip"

  if ! e2e_running etcd; then
    e2e_start etcd etcd --name e2e --data-dir "$E2E_STATE/etcd" \
      --listen-client-urls "http://127.0.0.1:$E2E_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$E2E_ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$E2E_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$E2E_ETCD_PEER_PORT" \
      --initial-cluster "e2e=http://127.0.0.1:$E2E_ETCD_PEER_PORT"
  fi
  e2e_wait 30 etcd curl -sf "http://127.0.0.1:$E2E_ETCD_PORT/health" || e2e_die "etcd: $(tail -5 "$E2E_STATE/log/etcd.log")"

  if ! e2e_running kube-apiserver; then
    e2e_start kube-apiserver kube-apiserver --etcd-servers="http://127.0.0.1:$E2E_ETCD_PORT" \
      --secure-port="$E2E_APISERVER_PORT" --bind-address=0.0.0.0 --advertise-address="$ip" \
      --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
      --client-ca-file="$pki/ca.crt" --authorization-mode=Node,RBAC \
      --enable-admission-plugins=NodeRestriction --allow-privileged=true \
      --service-cluster-ip-range="$E2E_SERVICE_CIDR" \
      --service-account-issuer=https://kubernetes.default.svc.cluster.local \
      --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
      --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
      --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
      --kubelet-preferred-address-types=InternalIP,Hostname
  fi
  e2e_wait 90 "kube-apiserver /readyz" kubectl get --raw /readyz ||
    e2e_die "kube-apiserver: $(tail -5 "$E2E_STATE/log/kube-apiserver.log")"

  if ! e2e_running kube-controller-manager; then
    e2e_start kube-controller-manager kube-controller-manager \
      --kubeconfig="$pki/controller-manager.kubeconfig" \
      --authentication-kubeconfig="$pki/controller-manager.kubeconfig" \
      --authorization-kubeconfig="$pki/controller-manager.kubeconfig" \
      --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
      --use-service-account-credentials=true --leader-elect=false \
      --bind-address=127.0.0.1 --secure-port=20257
  fi
  if ! e2e_running kube-scheduler; then
    e2e_start kube-scheduler kube-scheduler --kubeconfig="$pki/scheduler.kubeconfig" \
      --authentication-kubeconfig="$pki/scheduler.kubeconfig" \
      --authorization-kubeconfig="$pki/scheduler.kubeconfig" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port=20259
  fi

  start_containerd

  if ! e2e_running kube-proxy; then
    cat >"$E2E_STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $pki/kube-proxy.kubeconfig}
hostnameOverride: $E2E_NODE
mode: iptables
clusterCIDR: $E2E_POD_CIDR
# Leave the host's conntrack sysctls alone (not ours to tune on a shared machine).
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:20249
healthzBindAddress: 127.0.0.1:20256
YAML
    e2e_start kube-proxy kube-proxy --config="$E2E_STATE/kube-proxy.yaml"
  fi

  kubelet_config
  start_kubelet
  e2e_wait 120 "node $E2E_NODE Ready" \
    kubectl wait --for=condition=Ready "node/$E2E_NODE" --timeout=2s ||
    e2e_die "kubelet: $(tail -20 "$E2E_STATE/log/kubelet.log")"
  e2e_log "cluster up: node $E2E_NODE ($ip), KUBECONFIG=$KUBECONFIG"
}

start_containerd() {
  containerd_config
  if ! e2e_running containerd; then
    e2e_start containerd containerd --config "$E2E_STATE/containerd/config.toml"
  fi
  e2e_wait 30 containerd ctr version || e2e_die "containerd: $(tail -5 "$E2E_STATE/log/containerd.log")"
  "$e2e_here/images.sh" pause
}

start_kubelet() {
  e2e_running kubelet && return 0
  mkdir -p "$E2E_KUBELET_ROOT"
  e2e_start kubelet kubelet --config="$E2E_STATE/kubelet/config.yaml" \
    --kubeconfig="$pki/kubelet.kubeconfig" --hostname-override="$E2E_NODE" \
    --node-ip="$(cat "$E2E_STATE/node-ip")" --root-dir="$E2E_KUBELET_ROOT" -v=2
}

down() {
  # The kubelet first, then its containers straight through containerd (quicker than deleting
  # pods, and nothing is left behind); the API objects go with etcd's data.
  e2e_stop kubelet
  if e2e_running containerd; then
    local ids
    ids=$(ctr tasks ls -q 2>/dev/null || true)
    for id in $ids; do ctr tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
    sleep 1
    for id in $ids; do ctr tasks delete -f "$id" >/dev/null 2>&1 || true; done
  fi
  for c in kube-proxy kube-scheduler kube-controller-manager kube-apiserver; do e2e_stop "$c" & done
  wait
  for c in etcd containerd; do e2e_stop "$c" & done
  wait
  # Shims left by containerd (each in its own session, parented to init).
  for p in $(pgrep -f "containerd-shim-runc-v2 -namespace k8s.io -address $E2E_STATE/run/containerd.sock" || true); do
    kill -KILL "$p" 2>/dev/null || true
  done
  # Mounts under the state and the kubelet's root (pod volumes, overlay snapshots, netns).
  local m
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^($E2E_STATE|$E2E_KUBELET_ROOT|/run/netns/cni-)" | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$E2E_BRIDGE" 2>/dev/null || true
  # The iptables rules of kube-proxy, the kubelet and the CNI plugins: every rule that jumps to
  # or lives in a KUBE-*/CNI-* chain, then those chains.
  local ipt t rules chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null || continue
    for t in nat filter mangle; do
      rules=$("$ipt" -t "$t" -S 2>/dev/null || true)
      grep -E '^-A .*(KUBE-|CNI-)' <<<"$rules" | sed 's/^-A/-D/' |
        while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null || true; done || true
      for chain in $(awk '/^-N (KUBE-|CNI-)/{print $2}' <<<"$rules"); do "$ipt" -t "$t" -F "$chain" 2>/dev/null || true; done
      for chain in $(awk '/^-N (KUBE-|CNI-)/{print $2}' <<<"$rules"); do "$ipt" -t "$t" -X "$chain" 2>/dev/null || true; done
    done
  done
  # The images are imported again by `up` (seconds): no container of an old cluster survives.
  # The daemons' logs stay (log/, appended to by the next up) for a look after a failed run.
  rm -rf "${E2E_STATE:?}"/{etcd,pki,kubelet,containerd,cni,run,bin,assets,node-ip,kube-proxy.yaml} "$E2E_KUBELET_ROOT"
  rm -rf /var/run/gpu-slicer-e2e /usr/local/lib/gpu-slicer /etc/kubernetes/node-feature-discovery "$E2E_DRIVER_ROOT"
  e2e_log "cluster down"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  start-kubelet) start_kubelet ;;
  start-containerd) start_containerd ;;
  *) echo "usage: $0 up|down|start-kubelet" >&2; exit 2 ;;
esac
