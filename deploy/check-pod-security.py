#!/usr/bin/env python3
"""Checks every pod template in the given manifests against the Kubernetes Pod Security Standards,
"restricted" profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
the baseline controls plus the restricted ones, as the admission controller applies them.

Usage: deploy/check-pod-security.py FILE.yaml...   (exits 1 and names each violation)
"""

import sys

import yaml

ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def pod_specs(document):
    """The pod spec of a Pod, or the template of a workload (Deployment, Job, CronJob...)."""
    kind = document.get("kind")
    spec = document.get("spec") or {}
    if kind == "Pod":
        yield spec
    elif kind == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif "template" in spec:
        yield spec["template"].get("spec", {})


def violations(pod):
    pod_context = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            yield f"{flag} must not be set"
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            yield f"volume {volume.get('name')} has a forbidden type {sorted(kinds - ALLOWED_VOLUMES)}"
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            yield f"sysctl {sysctl.get('name')} is not in the safe set"
    containers = [
        *(pod.get("initContainers") or []),
        *(pod.get("containers") or []),
        *(pod.get("ephemeralContainers") or []),
    ]
    for container in containers:
        name = container.get("name")
        context = container.get("securityContext") or {}

        def setting(key):
            return context.get(key, pod_context.get(key))

        if context.get("privileged"):
            yield f"{name}: privileged"
        if context.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation must be false"
        if setting("runAsNonRoot") is not True:
            yield f"{name}: runAsNonRoot must be true (pod or container)"
        if setting("runAsUser") == 0:
            yield f"{name}: runAsUser must not be 0"
        seccomp = (setting("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield f"{name}: seccompProfile.type must be RuntimeDefault or Localhost, not {seccomp}"
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            yield f"{name}: capabilities must drop ALL"
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            yield f"{name}: capabilities may add only NET_BIND_SERVICE, not {sorted(added)}"
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                yield f"{name}: hostPort {port['hostPort']}"
        if context.get("procMount", "Default") != "Default":
            yield f"{name}: procMount must be Default"
        selinux = setting("seLinuxOptions") or {}
        if selinux.get("user") or selinux.get("role"):
            yield f"{name}: seLinuxOptions user and role must not be set"
        if selinux.get("type") not in (None, "", "container_t", "container_init_t", "container_kvm_t"):
            yield f"{name}: seLinuxOptions.type {selinux['type']} is not allowed"
        apparmor = (setting("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            yield f"{name}: appArmorProfile.type {apparmor} is not allowed"


def main(paths):
    failed = checked = 0
    for path in paths:
        with open(path, encoding="utf-8") as file:
            for document in yaml.safe_load_all(file):
                if not document:
                    continue
                for pod in pod_specs(document):
                    checked += 1
                    where = f"{path}: {document['kind']} {document['metadata']['name']}"
                    for problem in violations(pod):
                        failed += 1
                        print(f"{where}: {problem}")
    print(f"{checked} pod templates checked against the restricted profile, {failed} violations")
    return 1 if failed or not checked else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
