# svcplane's kind node image, before its images are preloaded (hack/kind-images.sh node).
# Context: files/ (kind's node files, from the kind module), bin/ (built by
# hack/kind-images.sh go), default-storage.yaml.
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
COPY default-storage.yaml /kind/manifests/default-storage.yaml
RUN chmod 0755 /usr/local/bin/* /kind /kind/bin /kind/bin/* /usr/bin/kubelet /usr/bin/kubeadm /usr/bin/kubectl \
    && find /etc/containerd /etc/systemd/system /etc/sysctl.d /etc/default /kind/manifests -type f -exec chmod 0644 {} + \
    && echo "${KUBE_VERSION}" >/kind/version \
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && ctr oci spec \
       | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
       | jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json \
    && containerd --version && runc --version && kubelet --version
