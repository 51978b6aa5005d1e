# svcplane's kind node image, before its images are preloaded (hack/kind-images.sh node).
# Context: files/ (kind's node files, from the kind module), bin/ and cni/ (built by
# hack/kind-images.sh go), default-storage.yaml, runc-bounded, containerd-oom.conf.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG KUBE_VERSION
# systemd stops on SIGRTMIN+3 (SIGTERM makes it re-execute itself).
STOPSIGNAL SIGRTMIN+3
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY bin/containerd bin/ctr bin/containerd-shim-runc-v2 bin/crictl /usr/local/bin/
COPY bin/kubelet bin/kubeadm bin/kubectl /usr/bin/
# runc and the CNI plugins at kind's versions, where kind's base image puts the plugins.
COPY bin/runc /usr/sbin/runc
COPY cni/ /opt/cni/bin/
COPY default-storage.yaml /kind/manifests/default-storage.yaml
# Hosts whose capability bounding set lacks CAP_SYS_RESOURCE (hack/kind/runc-bounded): runc
# drops what the node lacks before privileged pods (kube-proxy) start, and nothing asks for
# an oom_score_adj below the node's own (containerd's unit, its sandboxes).
COPY runc-bounded /usr/local/sbin/runc
COPY containerd-oom.conf /etc/systemd/system/containerd.service.d/10-svcplane-oom.conf
RUN chmod 0755 /usr/local/bin/* /kind /kind/bin /kind/bin/* /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl /usr/sbin/runc /opt/cni/bin/* \
    && find /etc/containerd /etc/systemd/system /etc/sysctl.d /etc/default /kind/manifests -type f -exec chmod 0644 {} + \
    && chmod 0755 /usr/local/sbin/runc && chmod 0644 /etc/systemd/system/containerd.service.d/* \
    && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \
    && grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml \
    && echo "${KUBE_VERSION}" >/kind/version \
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && ctr oci spec \
       | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
       | jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json \
    && containerd --version && runc --version && kubelet --version
