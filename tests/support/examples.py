"""Checks the agent's examples for what a schema cannot see, for tests/manifests.rs.
Prints each problem on a line of its own and exits 1, or prints `ok` and exits 0.

Usage:
  examples.py daemonset FILE   the DaemonSet and its ConfigMap (needs PyYAML): the
                               ConfigMap's config is complete TOML, mounted where the
                               agent's --config reads it, its listen port is the
                               container's, the probes' and the scrape annotations'
  examples.py conffile FILE    /etc/keepalive/agent.toml as shipped: valid TOML that
                               attaches nothing, whose commented [[attach]] table is
                               valid once uncommented"""
import posixpath
import re
import sys
import tomllib

TOP_KEYS = {"listen", "reconcile", "attach"}
ATTACH_KEYS = {"cgroup", "idle", "interval", "count", "user_timeout", "mode", "existing"}
# Keys an example may leave out: the filters, the rules, and the root cgroup's consent.
FILTER_KEYS = {"peer", "exclude_peer", "port", "direction"}
OPTIONAL_KEYS = FILTER_KEYS | {"rule", "root"}
RULE_KEYS = FILTER_KEYS | {"name", "idle", "interval", "count", "user_timeout", "mode"}
MODES = {"on", "skip", "force", "off"}
# What loading and attaching the programs takes, and nothing more.
CAPABILITIES = {"BPF", "PERFMON", "NET_ADMIN"}


def listen_port(listen, problems):
    """The port of a listen address (127.0.0.1:9977, [::]:9977), or None."""
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)", listen)
    if not match or not 0 < int(match.group(2)) < 65536:
        problems.append(f"listen = {listen!r} is not ADDRESS:PORT")
        return None
    return match.group(1), int(match.group(2))


def is_seconds(value):
    return (isinstance(value, int) and 1 <= value <= 32767) or isinstance(value, str)


def check_attach(index, table, problems):
    where = f"[[attach]] #{index + 1}"
    keys = set(table)
    missing, unknown = ATTACH_KEYS - keys, keys - ATTACH_KEYS - OPTIONAL_KEYS
    if missing or unknown:
        problems.append(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    for number, rule in enumerate(table.get("rule", [])):
        if not set(rule) <= RULE_KEYS:
            problems.append(f"{where} rule #{number + 1}: unknown {sorted(set(rule) - RULE_KEYS)}")
    checks = {
        "cgroup": lambda v: isinstance(v, str) and v != "",
        "idle": is_seconds,
        "interval": is_seconds,
        "count": lambda v: isinstance(v, int) and 1 <= v <= 127,
        "user_timeout": lambda v: isinstance(v, (int, str)),
        "mode": lambda v: v in MODES,
        "existing": lambda v: isinstance(v, bool),
    }
    for key, valid in checks.items():
        if key in table and not valid(table[key]):
            problems.append(f"{where}: {key} = {table[key]!r} is not valid")


def check_config(config, problems, want_attach):
    """The agent's configuration: its keys, their types, and [[attach]] tables when
    `want_attach`; returns the listen (address, port), or None."""
    unknown = set(config) - TOP_KEYS
    if unknown:
        problems.append(f"unknown keys {sorted(unknown)}")
    for key in ("listen", "reconcile"):
        if not isinstance(config.get(key), str):
            problems.append(f"{key} is missing or not a string")
    attach = config.get("attach", [])
    if want_attach and not attach:
        problems.append("no [[attach]] table")
    for index, table in enumerate(attach):
        check_attach(index, table, problems)
    return listen_port(config["listen"], problems) if "listen" in config else None


def one(docs, kind, problems):
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        problems.append(f"{len(found)} {kind} documents, not 1")
        return None
    return found[0]


def agent_container(spec, problems):
    containers = [
        c for c in spec["containers"] if "agent" in c.get("command", []) + c.get("args", [])
    ]
    if len(containers) != 1:
        problems.append(f"{len(containers)} containers run `keepalive agent`, not 1")
        return None
    return containers[0]


def config_path(argv, problems):
    if "--keep-attached" not in argv:
        problems.append("the agent runs without --keep-attached")
    if "--config" not in argv or argv.index("--config") + 1 >= len(argv):
        problems.append("the agent runs without --config FILE")
        return None
    return argv[argv.index("--config") + 1]


def mounted_config(path, container, spec, configmap, problems):
    """The ConfigMap's text the agent reads at `path`, or None."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    directory, key = posixpath.split(path)
    for mount in container.get("volumeMounts", []):
        source = volumes.get(mount["name"], {}).get("configMap", {})
        if mount["mountPath"] == directory and source.get("name") == configmap["metadata"]["name"]:
            text = configmap.get("data", {}).get(key)
            if text is None:
                problems.append(f"the ConfigMap has no key {key}")
            return text
    problems.append(f"no volumeMount of the ConfigMap at {directory}, where --config {path} is")
    return None


def check_ports(port, container, template, problems):
    metrics = [p for p in container.get("ports", []) if p.get("containerPort") == port]
    if not metrics:
        problems.append(f"no containerPort {port}, the listen port")
    names = {p.get("name") for p in metrics} | {port}
    annotations = template["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") != "true":
        problems.append("no prometheus.io/scrape: \"true\" annotation")
    if annotations.get("prometheus.io/port") != str(port):
        problems.append(f"prometheus.io/port is not \"{port}\"")
    for probe in ("readinessProbe", "livenessProbe"):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != "/healthz" or get.get("port") not in names:
            problems.append(f"{probe} is not GET /healthz on port {port}")


def check_privileges(container, spec, problems):
    context = container.get("securityContext", {})
    if context.get("privileged"):
        problems.append("the agent's container is privileged")
    added = set(context.get("capabilities", {}).get("add", []))
    if added != CAPABILITIES:
        problems.append(f"capabilities added: {sorted(added)}, not {sorted(CAPABILITIES)}")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for path, writable in (("/sys/fs/cgroup", False), ("/sys/fs/bpf", True)):
        mounts = [
            m
            for m in container.get("volumeMounts", [])
            if volumes.get(m["name"], {}).get("hostPath", {}).get("path") == path
        ]
        if [m["mountPath"] for m in mounts] != [path]:
            problems.append(f"the host's {path} is not mounted at {path}")
        elif writable and mounts[0].get("readOnly"):
            problems.append(f"{path} is mounted read-only")


def daemonset(path):
    import yaml

    problems = []
    with open(path) as file:
        docs = [d for d in yaml.safe_load_all(file) if d]
    configmap = one(docs, "ConfigMap", problems)
    daemon = one(docs, "DaemonSet", problems)
    if not configmap or not daemon:
        return problems
    if configmap["metadata"].get("namespace") != daemon["metadata"].get("namespace"):
        problems.append("the ConfigMap and the DaemonSet are in different namespaces")
    template = daemon["spec"]["template"]
    spec = template["spec"]
    container = agent_container(spec, problems)
    if not container:
        return problems
    argv = container.get("command", []) + container.get("args", [])
    config_file = config_path(argv, problems)
    text = mounted_config(config_file, container, spec, configmap, problems) if config_file else None
    if text is None:
        return problems
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return problems + [f"the ConfigMap's {config_file} is not TOML: {error}"]
    listen = check_config(config, problems, want_attach=True)
    if listen:
        address, port = listen
        if address not in ("0.0.0.0", "[::]"):
            problems.append(f"listen address {address}: Prometheus cannot reach it from outside the pod")
        check_ports(port, container, template, problems)
    check_privileges(container, spec, problems)
    return problems


def conffile(path):
    problems = []
    with open(path) as file:
        text = file.read()
    try:
        shipped = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return [f"{path} is not TOML: {error}"]
    check_config(shipped, problems, want_attach=False)
    if "attach" in shipped:
        problems.append("as shipped it attaches a cgroup")
    # The example table: its lines start with `#[[` or `#key =`.
    example = re.sub(r"(?m)^#(?=\[\[|\w+ = )", "", text)
    try:
        uncommented = tomllib.loads(example)
    except tomllib.TOMLDecodeError as error:
        return problems + [f"the commented example is not TOML once uncommented: {error}"]
    check_config(uncommented, problems, want_attach=True)
    return problems


def main():
    what, path = sys.argv[1], sys.argv[2]
    problems = {"daemonset": daemonset, "conffile": conffile}[what](path)
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
