package pacing_test

import (
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }
