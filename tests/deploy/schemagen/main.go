// Command schemagen writes standalone, strict JSON schemas for kubeconform, offline:
//
//   - every Kubernetes kind from the OpenAPI v3 documents that ship in the k8s.io/kubernetes
//     module (api/openapi-spec/v3), with each $ref inlined;
//   - every version of every CustomResourceDefinition given (Karpenter's NodePool,
//     EC2NodeClass, NodeOverlay, ...), from its openAPIV3Schema.
//
// Strict means an object that lists its properties accepts no others, so a misspelt field in a
// manifest fails validation instead of being dropped by the API server. Files are laid out for
// kubeconform's -schema-location 'OUT/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
// (kubeconform's Group is the whole apiVersion for core kinds, hence OUT/v1/...).
//
// Usage: schemagen -k8s DIR -out DIR [CRD.yaml ...]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

type schema = map[string]any

func main() {
	k8sDir := flag.String("k8s", "", "directory of Kubernetes OpenAPI v3 JSON documents")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *out == "" {
		fail("-out is required")
	}
	n := 0
	if *k8sDir != "" {
		n += kubernetes(*k8sDir, *out)
	}
	for _, crd := range flag.Args() {
		n += crdSchemas(crd, *out)
	}
	fmt.Printf("schemagen: wrote %d schemas to %s\n", n, *out)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "schemagen: "+format+"\n", args...)
	os.Exit(1)
}

func kubernetes(dir, out string) int {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		fail("no OpenAPI documents in %s", dir)
	}
	defs := map[string]schema{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		var doc struct {
			Components struct {
				Schemas map[string]schema `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			fail("%s: %v", f, err)
		}
		for name, s := range doc.Components.Schemas {
			defs[name] = s
		}
	}
	n := 0
	for name, s := range defs {
		gvks, _ := s["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk := g.(map[string]any)
			group, version, kind := gvk["group"].(string), gvk["version"].(string), gvk["kind"].(string)
			resolved := inline(s, defs, map[string]bool{name: true})
			write(out, group, version, kind, resolved)
			n++
		}
	}
	return n
}

// inline returns s with every $ref replaced by its definition. A definition that refers to
// itself (JSONSchemaProps) is cut to an open object at the second visit.
func inline(s schema, defs map[string]schema, seen map[string]bool) schema {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if seen[name] {
			return schema{}
		}
		target, ok := defs[name]
		if !ok {
			fail("unresolved $ref %s", ref)
		}
		seen[name] = true
		defer delete(seen, name)
		return inline(target, defs, seen)
	}
	// OpenAPI v3 wraps a ref with siblings as allOf: [{$ref}].
	if all, ok := s["allOf"].([]any); ok && len(all) == 1 {
		merged := inline(all[0].(schema), defs, seen)
		for k, v := range s {
			if k != "allOf" && k != "default" && k != "description" {
				merged[k] = v
			}
		}
		return strictify(merged)
	}
	outS := schema{}
	for k, v := range s {
		switch k {
		case "properties":
			props := schema{}
			for p, ps := range v.(map[string]any) {
				props[p] = inline(ps.(schema), defs, seen)
			}
			outS[k] = props
		case "items":
			if m, ok := v.(map[string]any); ok {
				outS[k] = inline(m, defs, seen)
			} else {
				outS[k] = v
			}
		case "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				outS[k] = inline(m, defs, seen)
			} else {
				outS[k] = v
			}
		case "description", "default", "x-kubernetes-group-version-kind":
			// Dropped: they do not constrain and they make the files large.
		default:
			outS[k] = v
		}
	}
	return strictify(outS)
}

// strictify maps Kubernetes' OpenAPI extensions to plain JSON schema.
func strictify(s schema) schema {
	if b, _ := s["x-kubernetes-int-or-string"].(bool); b {
		delete(s, "type")
		s["anyOf"] = []any{schema{"type": "integer"}, schema{"type": "string"}}
	}
	if b, _ := s["nullable"].(bool); b {
		if t, ok := s["type"].(string); ok {
			s["type"] = []any{t, "null"}
		}
	}
	delete(s, "nullable")
	_, hasProps := s["properties"]
	_, hasAdditional := s["additionalProperties"]
	preserve, _ := s["x-kubernetes-preserve-unknown-fields"].(bool)
	if hasProps && !hasAdditional && !preserve {
		s["additionalProperties"] = false
	}
	return s
}

func crdSchemas(path, out string) int {
	raw, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	var crd struct {
		Kind string `json:"kind"`
		Spec struct {
			Group string `json:"group"`
			Names struct {
				Kind string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema schema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		fail("%s: %v", path, err)
	}
	if crd.Kind != "CustomResourceDefinition" {
		fail("%s: not a CustomResourceDefinition (kind %q)", path, crd.Kind)
	}
	n := 0
	for _, v := range crd.Spec.Versions {
		if v.Schema.OpenAPIV3Schema == nil {
			fail("%s: version %s has no openAPIV3Schema", path, v.Name)
		}
		s := walk(v.Schema.OpenAPIV3Schema)
		// The API server adds these; a manifest may carry them.
		if props, ok := s["properties"].(schema); ok {
			props["apiVersion"] = schema{"type": "string"}
			props["kind"] = schema{"type": "string"}
			props["metadata"] = schema{"type": "object"}
		}
		write(out, crd.Spec.Group, v.Name, crd.Spec.Names.Kind, s)
		n++
	}
	return n
}

func walk(s schema) schema {
	for _, key := range []string{"properties", "patternProperties"} {
		if props, ok := s[key].(map[string]any); ok {
			for p, ps := range props {
				props[p] = walk(ps.(schema))
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties"} {
		if m, ok := s[key].(map[string]any); ok {
			s[key] = walk(m)
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := s[key].([]any); ok {
			for i, e := range list {
				if m, ok := e.(map[string]any); ok {
					list[i] = walk(m)
				}
			}
		}
	}
	delete(s, "description")
	return strictify(s)
}

func write(out, group, version, kind string, s schema) {
	dir := group
	if dir == "" {
		dir = version
	}
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	path := filepath.Join(out, dir, strings.ToLower(kind)+"_"+version+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fail("%v", err)
	}
	raw, err := json.Marshal(s)
	if err != nil {
		fail("%s: %v", path, err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		fail("%v", err)
	}
}
