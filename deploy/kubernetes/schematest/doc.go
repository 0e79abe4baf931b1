// Package schematest checks the manifests of deploy/kubernetes: every
// document decodes into the Kubernetes API types (k8s.io/api) with unknown
// fields refused, so that a misspelt or misplaced field fails here instead
// of being dropped by the API server; and the pod template keeps the
// invariants the holder relies on (docs/kubernetes.md): the holder is a
// native sidecar or a plain container, no probe is a tcpSocket probe, the
// socket directory is one memory-backed emptyDir mounted as a directory in
// both containers, and both run as the same non-root uid with the tight
// security context.
//
// It is a Go module of its own, so that the Kubernetes API types are never
// a dependency of the fdholder module. Run its tests with
//
//	cd deploy/kubernetes/schematest && go test ./...
package schematest
