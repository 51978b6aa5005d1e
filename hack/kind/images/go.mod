module svcplane.local/kind-images

go 1.26
