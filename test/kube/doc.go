// Package kube tests the Kubernetes manifests of deploy/kubernetes on a
// real container engine: Debian's podman 4.3 plays
// deploy/kubernetes/deployment-containers.yaml (podman ignores
// restartPolicy on init containers, so the native-sidecar variant cannot
// be played) with the images deploy/kubernetes/image/build makes from the
// checkout, offline (FROM scratch; podman builds its pause image from
// catatonit).
//
// podman and buildah run inside a private mount namespace held by one
// process for the whole test, with tmpfs over /run and the storage
// directory, temporary files in the test's directory, so that nothing they write outlives the test; the
// configuration (runc, cgroupfs, the descriptor limits) is passed with
// CONTAINERS_CONF and CONTAINERS_STORAGE_CONF. The pod runs with
// --network none: a network namespace of its own with loopback only, which
// wrk enters with nsenter -n.
//
// The package has no code of its own. Run it as root with
//
//	FDHOLDER_REQUIRE_PEERS=1 go test -v ./test/kube/
//
// (apt-get install podman buildah catatonit runc wrk) and read the figures
// it logs: wrk's report across the app container's restarts.
package kube
