# svcplane's image built without a registry (hack/kind-images.sh svcplane): the static musl
# binary on an empty base. Context: the binary alone. The Dockerfile at the repository's root
# builds the same image for users whose Docker reaches a registry.
FROM scratch
COPY svcplane /usr/local/bin/svcplane
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/svcplane"]
