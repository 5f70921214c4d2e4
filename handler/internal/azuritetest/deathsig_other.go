//go:build !linux

package azuritetest

import "os/exec"

// setDeathSignal does nothing outside Linux: there Main's Stop is the only cleanup.
func setDeathSignal(*exec.Cmd) {}
