package gateway

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardAssetsEmbedded: the dashboard's files come from the binary,
// with usable content types (every ES module with a JavaScript type, or the
// browser refuses to run it), a favicon at both names, and load nothing
// from any other site.
func TestDashboardAssetsEmbedded(t *testing.T) {
	h, err := dashboard()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	static, err := fs.Sub(web, "web")
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]string{
		"/":            "text/html",
		"/style.css":   "text/css",
		"/favicon.svg": "image/svg+xml",
		"/favicon.ico": "image/svg+xml",
	}
	err = fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".js") {
			want["/"+p] = "text/javascript"
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := want["/js/main.js"]; !ok {
		t.Fatal("no web/js/main.js embedded")
	}
	for p, ctype := range want {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s = %d %q, want 200 %s", p, resp.StatusCode, resp.Header.Get("Content-Type"), ctype)
		}
	}
	resp, err := http.Get(srv.URL + "/js/no-such-module.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("GET of a missing module = %d %q, want a plain 404", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	resp, err = http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("GET / Content-Security-Policy = %q, want the dashboard's own files only, never framed", csp)
	}
	if strings.Contains(string(page), "Content-Security-Policy") {
		t.Error("index.html has a CSP <meta> tag: the policy is the gateway's header (frame-ancestors is ignored in <meta>)")
	}
	for _, s := range []string{`<script type="module" src="js/main.js">`, `rel="icon" href="favicon.svg"`} {
		if !strings.Contains(string(page), s) {
			t.Errorf("index.html lacks %s", s)
		}
	}

	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//`)
	imports := regexp.MustCompile(`(?m)^\s*import\s[^'"]*['"]([^'"]+)['"]`)
	seen := 0
	err = fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads from another site: %q", p, m)
		}
		if !strings.HasSuffix(p, ".js") {
			return nil
		}
		if strings.Contains(string(b), "innerHTML") {
			t.Errorf("%s uses innerHTML; build nodes with text instead", p)
		}
		// Every import is a relative path to an embedded module.
		for _, m := range imports.FindAllSubmatch(b, -1) {
			seen++
			spec := string(m[1])
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: only relative module paths work without a build step", p, spec)
				continue
			}
			if _, err := fs.Stat(static, path.Join(path.Dir(p), spec)); err != nil {
				t.Errorf("%s imports %q, which is not embedded", p, spec)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Error("found no import in the modules: the pattern is out of date")
	}
}
