package gateway

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardAssetsEmbedded: the dashboard's files come from the binary,
// with usable content types, and load nothing from any other site.
func TestDashboardAssetsEmbedded(t *testing.T) {
	static, err := fs.Sub(web, "web")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServerFS(static))
	defer srv.Close()
	for path, ctype := range map[string]string{
		"/":           "text/html",
		"/js/main.js": "javascript",
		"/style.css":  "text/css",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s = %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//`)
	err = fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads from another site: %q", path, m)
		}
		if strings.HasSuffix(path, ".js") && strings.Contains(string(b), "innerHTML") {
			t.Errorf("%s uses innerHTML; build nodes with text instead", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
