package schematest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// dir is deploy/kubernetes, where the manifests are.
const dir = ".."

// manifestFiles are every manifest in dir: every .yaml file but
// kustomization.yaml, which is not an API object.
func manifestFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "kustomization.yaml" })
	if len(files) == 0 {
		t.Fatalf("no manifest in %s", dir)
	}
	return files
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeFile(t testing.TB, name string) []Manifest {
	t.Helper()
	ms, err := Decode(name, read(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestManifests decodes every manifest strictly and checks the invariants
// of every Deployment.
func TestManifests(t *testing.T) {
	deployments := 0
	for _, f := range manifestFiles(t) {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			for _, m := range decodeFile(t, name) {
				d, ok := m.Object.(*appsv1.Deployment)
				if !ok {
					continue
				}
				deployments++
				if errs := Check(d); len(errs) > 0 {
					t.Errorf("document %d: %v", m.Index, errors.Join(errs...))
				}
			}
		})
	}
	if deployments < 2 {
		t.Errorf("%d Deployments, want the native sidecar one and the containers: one", deployments)
	}
}

// TestVariants: deployment.yaml has the holder as a native sidecar,
// deployment-containers.yaml as a container, and otherwise they run the
// same containers the same way.
func TestVariants(t *testing.T) {
	native := decodeFile(t, "deployment.yaml")[0].Object.(*appsv1.Deployment)
	plain := decodeFile(t, "deployment-containers.yaml")[0].Object.(*appsv1.Deployment)
	nh, nativeIsInit := findHolder(&native.Spec.Template.Spec)
	ph, plainIsInit := findHolder(&plain.Spec.Template.Spec)
	if !nativeIsInit || plainIsInit {
		t.Fatalf("holder in initContainers: deployment.yaml %v, deployment-containers.yaml %v; want true, false", nativeIsInit, plainIsInit)
	}
	if !slices.Equal(ImageNames(native), ImageNames(plain)) {
		t.Errorf("images %v and %v differ", ImageNames(native), ImageNames(plain))
	}
	same := func(what string, a, b any) {
		t.Helper()
		if !equalJSON(t, a, b) {
			t.Errorf("%s differs between the variants", what)
		}
	}
	same("the holder's args", nh.Args, ph.Args)
	same("the holder's env", nh.Env, ph.Env)
	same("the holder's securityContext", nh.SecurityContext, ph.SecurityContext)
	same("the holder's resources", nh.Resources, ph.Resources)
	same("the pod's securityContext", native.Spec.Template.Spec.SecurityContext, plain.Spec.Template.Spec.SecurityContext)
	same("the pod's volumes", native.Spec.Template.Spec.Volumes, plain.Spec.Template.Spec.Volumes)
	na, pa := native.Spec.Template.Spec.Containers[0], plain.Spec.Template.Spec.Containers[1]
	same("the app's command", na.Command, pa.Command)
	same("the app's securityContext", na.SecurityContext, pa.SecurityContext)
}

// TestKustomization decodes kustomization.yaml strictly: its resources
// exist, and its images are the ones the Deployments run.
func TestKustomization(t *testing.T) {
	k, err := DecodeKustomization(dir, read(t, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, r := range k.Resources {
		for _, m := range decodeFile(t, r) {
			if d, ok := m.Object.(*appsv1.Deployment); ok {
				for _, img := range ImageNames(d) {
					used = append(used, strings.Split(img, ":")[0])
				}
			}
		}
	}
	for _, img := range k.Images {
		if !slices.Contains(used, img.Name) {
			t.Errorf("kustomization.yaml renames image %s, which no Deployment runs", img.Name)
		}
	}
	for _, u := range used {
		if !slices.ContainsFunc(k.Images, func(i Image) bool { return i.Name == u }) {
			t.Errorf("image %s is not in kustomization.yaml's images: a user cannot point it at a registry", u)
		}
	}
}

// TestRefused: manifests that break the schema or an invariant, each made
// from a shipped one by one change, are refused with a message that names
// the problem.
func TestRefused(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		old, new string
		want     string
	}{
		{
			name: "unknown field",
			file: "deployment.yaml",
			old:  "          restartPolicy: Always\n",
			new:  "          restartPolicyy: Always\n",
			want: `unknown field "spec.template.spec.initContainers[0].restartPolicyy"`,
		},
		{
			name: "field at the wrong level",
			file: "deployment.yaml",
			old:  "  replicas: 1\n",
			new:  "  replicas: 1\n  restartPolicy: Always\n",
			want: `unknown field "spec.restartPolicy"`,
		},
		{
			name: "wrong type",
			file: "deployment.yaml",
			old:  "periodSeconds: 1\n",
			new:  "periodSeconds: one\n",
			want: "cannot unmarshal string",
		},
		{
			name: "duplicate key",
			file: "service.yaml",
			old:  "  selector:\n",
			new:  "  type: ClusterIP\n  type: NodePort\n  selector:\n",
			want: `key "type" already set`,
		},
		{
			name: "unknown kind",
			file: "service.yaml",
			old:  "kind: Service",
			new:  "kind: Servic",
			want: `unexpected apiVersion "v1" kind "Servic"`,
		},
		{
			name: "init holder without restartPolicy",
			file: "deployment.yaml",
			old:  "          restartPolicy: Always\n",
			new:  "",
			want: "restartPolicy must be Always",
		},
		{
			name: "tcpSocket readiness probe",
			file: "deployment.yaml",
			old:  "            httpGet:\n              path: /healthz\n              port: http\n",
			new:  "            tcpSocket:\n              port: http\n",
			want: "readinessProbe is a tcpSocket probe",
		},
		{
			name: "tcpSocket liveness probe on the holder",
			file: "deployment-containers.yaml",
			old:  "          livenessProbe:\n            exec:\n              command: [\"/usr/local/bin/fdclient\", \"--timeout=5s\", \"list\"]\n",
			new:  "          livenessProbe:\n            tcpSocket:\n              port: 8080\n",
			want: "container fdholder: livenessProbe is a tcpSocket probe",
		},
		{
			name: "another uid for the app",
			file: "deployment.yaml",
			old:  "          image: localhost/fdholder-example-web:latest\n",
			new:  "          image: localhost/fdholder-example-web:latest\n          securityContext: {runAsUser: 1000}\n",
			want: `key "securityContext" already set`, // the rule itself: TestSameUID
		},
		{
			name: "socket file mounted instead of its directory",
			file: "deployment-containers.yaml",
			old:  "              mountPath: /run/fdholder\n          # HTTP, never tcpSocket",
			new:  "              mountPath: /run/fdholder\n              subPath: fdholder.sock\n          # HTTP, never tcpSocket",
			want: "container web: the socket directory must be mounted as a directory",
		},
		{
			name: "disk-backed socket directory",
			file: "deployment.yaml",
			old:  "            medium: Memory\n",
			new:  "",
			want: "must be an emptyDir with medium Memory",
		},
		{
			name: "app not started through fdclient exec",
			file: "deployment.yaml",
			old:  "            - /usr/local/bin/fdclient\n            - exec\n",
			new:  "",
			want: "does not start the app through /usr/local/bin/fdclient exec",
		},
		{
			name: "capabilities kept",
			file: "deployment-containers.yaml",
			old:  "              drop: [\"ALL\"]\n",
			new:  "              drop: [\"NET_RAW\"]\n",
			want: "capabilities must drop ALL",
		},
		{
			name: "no requests",
			file: "deployment.yaml",
			old:  "              cpu: 50m\n",
			new:  "",
			want: "container web: no cpu and memory requests",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := string(read(t, tt.file))
			if strings.Count(orig, tt.old) < 1 {
				t.Fatalf("%s does not contain %q: update the test", tt.file, tt.old)
			}
			data := strings.Replace(orig, tt.old, tt.new, 1)
			err := checkAll(tt.file, []byte(data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestSameUID runs the uid rule on decoded objects, where a YAML edit
// would only meet the duplicate-key rule.
func TestSameUID(t *testing.T) {
	d := decodeFile(t, "deployment.yaml")[0].Object.(*appsv1.Deployment)
	other := int64(1000)
	d.Spec.Template.Spec.Containers[0].SecurityContext.RunAsUser = &other
	errs := errors.Join(Check(d)...)
	if errs == nil || !strings.Contains(errs.Error(), "container web: runs as 1000:65532, another container as 65532:65532") {
		t.Fatalf("got %v, want the uid mismatch", errs)
	}
	root := int64(0)
	d.Spec.Template.Spec.Containers[0].SecurityContext.RunAsUser = &root
	errs = errors.Join(Check(d)...)
	if errs == nil || !strings.Contains(errs.Error(), "container web: runAsUser and runAsGroup must be set, and not root") {
		t.Fatalf("got %v, want root refused", errs)
	}
}

// checkAll decodes data and checks every Deployment in it.
func checkAll(file string, data []byte) error {
	ms, err := Decode(file, data)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if d, ok := m.Object.(*appsv1.Deployment); ok {
			errs = append(errs, Check(d)...)
		}
	}
	return errors.Join(errs...)
}

// equalJSON compares a and b by their JSON forms, which is how the API
// server sees them.
func equalJSON(t testing.TB, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
