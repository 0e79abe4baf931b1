package manpage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Generate fills every template (deploy/man/PAGE.in) and writes the page
// to outDir/PAGE. A template with @SYNOPSIS@ or @BODY@ takes its help
// text from "binDir/PROG --help", PROG being the page's name without its
// section; @FILE@ names are relative to the template.
func Generate(templates []string, binDir, outDir, version, date string) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for _, t := range templates {
		tmpl, err := os.ReadFile(t)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(t), ".in")
		page := Page{Version: version, Date: date}
		if strings.Contains(string(tmpl), "@SYNOPSIS@") || strings.Contains(string(tmpl), "@BODY@") {
			prog := strings.TrimSuffix(name, filepath.Ext(name))
			help, err := exec.Command(filepath.Join(binDir, prog), "--help").Output()
			if err != nil {
				return fmt.Errorf("%s --help: %w", prog, err)
			}
			page.Help = string(help)
		}
		dir := filepath.Dir(t)
		s, err := Fill(string(tmpl), page, func(f string) ([]byte, error) {
			return os.ReadFile(filepath.Join(dir, f))
		})
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		if err := os.WriteFile(filepath.Join(outDir, name), []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}
