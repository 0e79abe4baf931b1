package schematest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// A Manifest is one decoded document of a manifest file.
type Manifest struct {
	File   string // the file's base name
	Index  int    // the document's index in the file, from 0
	Object any    // *appsv1.Deployment or *corev1.Service
}

// kinds are the API types the manifests may contain, by apiVersion and
// kind; any other document is an error.
var kinds = map[metav1.TypeMeta]func() any{
	{APIVersion: "apps/v1", Kind: "Deployment"}: func() any { return &appsv1.Deployment{} },
	{APIVersion: "v1", Kind: "Service"}:         func() any { return &corev1.Service{} },
}

// docSeparator splits a YAML stream into documents.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// Decode decodes every document of data strictly, the way the API server
// does for kubectl apply --validate=strict: YAML to JSON refusing
// duplicate keys (sigs.k8s.io/yaml), then sigs.k8s.io/json's strict
// decoder, which names every unknown or duplicate field by its path. A
// value of the wrong type is an error too.
func Decode(file string, data []byte) ([]Manifest, error) {
	var out []Manifest
	for i, doc := range docSeparator.Split(string(data), -1) {
		if len(bytes.TrimSpace(stripComments([]byte(doc)))) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		newObj, ok := kinds[tm]
		if !ok {
			return nil, fmt.Errorf("%s: document %d: unexpected apiVersion %q kind %q", file, i, tm.APIVersion, tm.Kind)
		}
		obj := newObj()
		if err := decodeStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", file, i, tm.Kind, err)
		}
		out = append(out, Manifest{File: file, Index: i, Object: obj})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no document", file)
	}
	return out, nil
}

func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

var commentLine = regexp.MustCompile(`(?m)^[ \t]*#.*$`)

func stripComments(b []byte) []byte { return commentLine.ReplaceAll(b, nil) }

// Kustomization is the part of kustomization.yaml the manifests use,
// decoded strictly too: kustomize's own types would bring kustomize in.
type Kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Replicas   []struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	} `json:"replicas"`
	Images []Image `json:"images"`
}

// Image is one entry of a kustomization's images: a name the manifests
// use, and where the image really is.
type Image struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
}

// DecodeKustomization decodes kustomization.yaml strictly and checks that
// its resources exist in dir.
func DecodeKustomization(dir string, data []byte) (*Kustomization, error) {
	var k Kustomization
	if err := decodeStrict(data, &k); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("kustomization.yaml: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("kustomization.yaml: no resources")
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			return nil, fmt.Errorf("kustomization.yaml: resource %s: %w", r, err)
		}
	}
	return &k, nil
}

// ImageNames returns the images the pod template runs, in order.
func ImageNames(d *appsv1.Deployment) []string {
	var names []string
	for _, c := range slices.Concat(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers) {
		names = append(names, c.Image)
	}
	return names
}
