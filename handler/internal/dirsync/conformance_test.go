package dirsync_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/directorytest"
	"github.com/leapchange/m365/handler/internal/dirsync"
	"github.com/leapchange/m365/handler/internal/m365sim"
)

// The suite's Directory has every method the engine calls (dirsync's directory interface).
var _ = dirsync.Config{Directory: directorytest.Directory(nil)}

// TestStandInConformance runs the directory suite, which the graph package's client passes,
// against these tests' Graph stand-in, so the stand-in cannot drift from the client.
func TestStandInConformance(t *testing.T) {
	directorytest.Run(t, func(t *testing.T, sim *m365sim.Server, _ string) directorytest.Directory {
		return newGraphDir(sim, directorytest.ClientID, directorytest.ClientSecret)
	})
}
