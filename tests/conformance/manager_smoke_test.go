package conformance

import (
	"testing"
)

// TestUpstreamManagerStarts builds the upstream device manager on a private directory and starts
// and stops it: the build-and-link check that every other test depends on.
func TestUpstreamManagerStarts(t *testing.T) {
	dir := t.TempDir()
	k := newKubelet(t, dir)
	k.stop()
}
