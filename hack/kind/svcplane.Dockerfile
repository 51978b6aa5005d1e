# svcplane's image built without a registry (hack/kind-images.sh svcplane): the binary
# hack/test.sh's cargo builds compile anyway (debug profile, stripped) and the shared
# libraries it was linked against, on an empty base. Context: rootfs/. The Dockerfile at the
# repository's root builds the release image for users whose Docker reaches a registry.
FROM scratch
COPY rootfs/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/svcplane"]
