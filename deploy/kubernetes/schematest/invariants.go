package schematest

import (
	"fmt"
	"path"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The names the manifests use for the holder.
const (
	HolderName = "fdholder"        // the holder's container
	SocketEnv  = "FDHOLDER_SOCKET" // its socket path, in both containers
	FDClient   = "/usr/local/bin/fdclient"
)

// Check returns every invariant the pod template of d breaks (none: nil).
//
//   - The holder is the container named HolderName: a native sidecar (an
//     initContainers entry with restartPolicy: Always and a startupProbe,
//     so that the app starts after it answers) or an ordinary container
//     listed first; an init container without restartPolicy: Always would
//     block the pod until it exited.
//   - Every other container is started through "fdclient exec".
//   - No probe anywhere is a tcpSocket probe (a held listener completes
//     handshakes while the app is down), and every app container has an
//     HTTP or exec readiness probe.
//   - SocketEnv is the same path in every container, and its directory is
//     the mount path, with no subPath, of one emptyDir volume with medium
//     Memory in every container.
//   - Every container runs as the same non-root uid and gid, with
//     runAsNonRoot, no privilege escalation, a read-only root file
//     system, every capability dropped, seccomp RuntimeDefault (its own or
//     the pod's), and cpu and memory requests.
func Check(d *appsv1.Deployment) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	spec := &d.Spec.Template.Spec

	holder, native := findHolder(spec)
	switch {
	case holder == nil:
		fail("no container named %s", HolderName)
	case native && (holder.RestartPolicy == nil || *holder.RestartPolicy != corev1.ContainerRestartPolicyAlways):
		fail("init container %s: restartPolicy must be Always (a native sidecar); without it the pod waits for the holder to exit", HolderName)
	case native && (holder.StartupProbe == nil || holder.StartupProbe.Exec == nil):
		fail("init container %s: no exec startupProbe: the app could start before the holder answers", HolderName)
	case !native && spec.Containers[0].Name != HolderName:
		fail("container %s is not the first container", HolderName)
	}
	for _, c := range spec.InitContainers {
		if c.Name != HolderName {
			fail("init container %s: only the holder may be an init container here", c.Name)
		}
	}

	all := slices.Concat(spec.InitContainers, spec.Containers)
	var apps []corev1.Container
	for _, c := range spec.Containers {
		if c.Name != HolderName {
			apps = append(apps, c)
		}
	}
	if len(apps) == 0 {
		fail("no app container beside the holder")
	}
	for _, c := range apps {
		if len(c.Command) < 2 || c.Command[0] != FDClient || !slices.Contains(c.Command, "exec") || !slices.Contains(c.Command, "--") {
			fail("container %s: command %q does not start the app through %s exec ... --", c.Name, c.Command, FDClient)
		}
		if p := c.ReadinessProbe; p == nil || (p.HTTPGet == nil && p.Exec == nil) {
			fail("container %s: no HTTP or exec readinessProbe", c.Name)
		}
	}
	for _, c := range all {
		for kind, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
			if p != nil && p.TCPSocket != nil {
				fail("container %s: %s is a tcpSocket probe: a held listener accepts while the app is down", c.Name, kind)
			}
		}
	}

	errs = append(errs, checkSocketDir(spec, all)...)
	errs = append(errs, checkSecurity(spec, all)...)
	return errs
}

// findHolder returns the holder's container and whether it is an init
// container.
func findHolder(spec *corev1.PodSpec) (*corev1.Container, bool) {
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == HolderName {
			return &spec.InitContainers[i], true
		}
	}
	for i := range spec.Containers {
		if spec.Containers[i].Name == HolderName {
			return &spec.Containers[i], false
		}
	}
	return nil, false
}

// checkSocketDir checks the shared socket directory.
func checkSocketDir(spec *corev1.PodSpec, all []corev1.Container) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	socket := ""
	for _, c := range all {
		v := envValue(c, SocketEnv)
		switch {
		case v == "":
			fail("container %s: no %s", c.Name, SocketEnv)
		case socket == "":
			socket = v
		case v != socket:
			fail("container %s: %s is %s, another container's is %s", c.Name, SocketEnv, v, socket)
		}
	}
	if socket == "" {
		return errs
	}
	dir := path.Dir(socket)
	volume := ""
	for _, c := range all {
		var m *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if path.Clean(c.VolumeMounts[i].MountPath) == dir || c.VolumeMounts[i].MountPath == socket {
				m = &c.VolumeMounts[i]
			}
		}
		switch {
		case m == nil:
			fail("container %s: nothing mounted at the socket directory %s", c.Name, dir)
			continue
		case m.SubPath != "" || m.SubPathExpr != "" || m.MountPath == socket:
			fail("container %s: the socket directory must be mounted as a directory, not a subPath or the socket file", c.Name)
		case m.ReadOnly:
			fail("container %s: the socket directory is mounted read-only", c.Name)
		}
		if volume == "" {
			volume = m.Name
		} else if m.Name != volume {
			fail("container %s: volume %s at %s, another container has %s", c.Name, m.Name, dir, volume)
		}
	}
	for _, v := range spec.Volumes {
		if v.Name != volume {
			continue
		}
		if v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
			fail("volume %s: the socket directory must be an emptyDir with medium Memory", v.Name)
		}
		return errs
	}
	if volume != "" {
		fail("volume %s: not in the pod's volumes", volume)
	}
	return errs
}

// checkSecurity checks the security context and the requests.
func checkSecurity(spec *corev1.PodSpec, all []corev1.Container) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	var uid, gid *int64
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			fail("container %s: no securityContext", c.Name)
			continue
		}
		u, g := or(sc.RunAsUser, pod.RunAsUser), or(sc.RunAsGroup, pod.RunAsGroup)
		switch {
		case u == nil || *u == 0 || g == nil:
			fail("container %s: runAsUser and runAsGroup must be set, and not root", c.Name)
		case uid == nil:
			uid, gid = u, g
		case *u != *uid || *g != *gid:
			fail("container %s: runs as %d:%d, another container as %d:%d: the holder admits only its own uid", c.Name, *u, *g, *uid, *gid)
		}
		if nonRoot := or(sc.RunAsNonRoot, pod.RunAsNonRoot); nonRoot == nil || !*nonRoot {
			fail("container %s: runAsNonRoot is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			fail("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			fail("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			fail("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			fail("container %s: capabilities must drop ALL and add none", c.Name)
		}
		seccomp := or(sc.SeccompProfile, pod.SeccompProfile)
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			fail("container %s: seccomp profile is not RuntimeDefault", c.Name)
		}
		req := c.Resources.Requests
		if req.Cpu().IsZero() || req.Memory().IsZero() {
			fail("container %s: no cpu and memory requests", c.Name)
		}
	}
	return errs
}

// or returns a, or b if a is nil: a container's setting overrides the
// pod's.
func or[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
