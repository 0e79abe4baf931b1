package e2e

import (
	"os"
	"strconv"
	"testing"

	"github.com/fdholder/fdholder/internal/e2etest"
)

// TestMain builds fdholderd and fdclient once; the tests start their own.
func TestMain(m *testing.M) {
	os.Exit(e2etest.Main(m))
}

func itoa(n int) string { return strconv.Itoa(n) }
