package scripts

// Tests for scripts/teams-app.sh: the Teams app package (infra/teams-app/).

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const (
	teamsTestBotID = "8f2c6a1e-0b3d-4c5e-9f7a-1b2c3d4e5f60"
	teamsTestAppID = "3c1d9e27-5a4b-4f6c-8d0e-2a1b3c4d5e6f"
)

// runTeamsApp runs scripts/teams-app.sh with args and env on top of the test's environment minus
// the variables the script reads (so a developer's own settings cannot change the outcome).
func runTeamsApp(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(t), "scripts", "teams-app.sh")}, args...)...)
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "BOT_APP_ID", "TEAMS_APP_ID", "TEAMS_APP_VERSION", "LEAP_APP_URL":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readTeamsZip returns the zip's entries by name.
func readTeamsZip(t *testing.T, path string) map[string][]byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer zr.Close()
	files := map[string][]byte{}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			t.Errorf("zip has a directory entry %q", f.Name)
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = b
	}
	return files
}

type teamsManifest struct {
	Schema          string `json:"$schema"`
	ManifestVersion string `json:"manifestVersion"`
	Version         string `json:"version"`
	ID              string `json:"id"`
	Developer       struct {
		Name, WebsiteURL, PrivacyURL, TermsOfUseURL string
	} `json:"developer"`
	Name        struct{ Short, Full string }    `json:"name"`
	Description struct{ Short, Full string }    `json:"description"`
	Icons       struct{ Color, Outline string } `json:"icons"`
	AccentColor string                          `json:"accentColor"`
	Bots        []struct {
		BotID              string   `json:"botId"`
		Scopes             []string `json:"scopes"`
		SupportsFiles      *bool    `json:"supportsFiles"`
		IsNotificationOnly *bool    `json:"isNotificationOnly"`
		CommandLists       []struct {
			Scopes   []string `json:"scopes"`
			Commands []struct{ Title, Description string }
		} `json:"commandLists"`
	} `json:"bots"`
	ValidDomains       []string `json:"validDomains"`
	WebApplicationInfo struct {
		ID       string `json:"id"`
		Resource string `json:"resource"`
	} `json:"webApplicationInfo"`
}

func TestTeamsAppPackage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "pkg", "teams.zip")
	log, err := runTeamsApp(t, []string{"BOT_APP_ID=" + teamsTestBotID, "TEAMS_APP_ID=" + teamsTestAppID},
		"-o", out, "--version", "2.3.4", "--app-url", "https://acme.leapchange.example/app")
	if err != nil {
		t.Fatalf("teams-app.sh: %v\n%s", err, log)
	}
	files := readTeamsZip(t, out)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "color.png,manifest.json,outline.png" {
		t.Fatalf("zip entries %v, want color.png, manifest.json and outline.png at the root", names)
	}

	raw := files["manifest.json"]
	if bytes.Contains(raw, []byte("{{")) || bytes.Contains(raw, []byte("}}")) {
		t.Errorf("a placeholder is left in the manifest:\n%s", raw)
	}
	var m teamsManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest.json: %v\n%s", err, raw)
	}
	if m.ManifestVersion != "1.30" ||
		m.Schema != "https://developer.microsoft.com/json-schemas/teams/v1.30/MicrosoftTeams.schema.json" {
		t.Errorf("manifestVersion %q, $schema %q: want 1.30 and its schema URL", m.ManifestVersion, m.Schema)
	}
	if m.Version != "2.3.4" || m.ID != teamsTestAppID {
		t.Errorf("version %q, id %q: want 2.3.4 and %s", m.Version, m.ID, teamsTestAppID)
	}
	// The bot id is in the bot, in webApplicationInfo's id and in its resource; nowhere is it left out.
	if n := bytes.Count(raw, []byte(teamsTestBotID)); n != 3 {
		t.Errorf("the bot id appears %d times in the manifest, want 3", n)
	}
	if m.WebApplicationInfo.ID != teamsTestBotID || m.WebApplicationInfo.Resource != "api://botid-"+teamsTestBotID {
		t.Errorf("webApplicationInfo %+v", m.WebApplicationInfo)
	}
	if m.Developer.Name == "" || !strings.HasPrefix(m.Developer.WebsiteURL, "https://") ||
		!strings.HasPrefix(m.Developer.PrivacyURL, "https://") || !strings.HasPrefix(m.Developer.TermsOfUseURL, "https://") {
		t.Errorf("developer %+v", m.Developer)
	}
	if m.Name.Short == "" || len(m.Name.Short) > 30 || len(m.Name.Full) > 100 ||
		m.Description.Short == "" || len(m.Description.Short) > 80 || m.Description.Full == "" || len(m.Description.Full) > 4000 {
		t.Errorf("name %+v / description %+v outside the schema's limits", m.Name, m.Description)
	}
	if len(m.AccentColor) != 7 || m.AccentColor[0] != '#' {
		t.Errorf("accentColor %q", m.AccentColor)
	}
	if strings.Join(m.ValidDomains, ",") != "acme.leapchange.example,token.botframework.com" {
		t.Errorf("validDomains %v", m.ValidDomains)
	}

	if len(m.Bots) != 1 {
		t.Fatalf("bots: %d, want 1", len(m.Bots))
	}
	bot := m.Bots[0]
	if bot.BotID != teamsTestBotID {
		t.Errorf("botId %q, want %s", bot.BotID, teamsTestBotID)
	}
	if strings.Join(bot.Scopes, ",") != "personal,team" {
		t.Errorf("bot scopes %v, want personal and team", bot.Scopes)
	}
	if bot.SupportsFiles == nil || *bot.SupportsFiles || bot.IsNotificationOnly == nil || *bot.IsNotificationOnly {
		t.Errorf("supportsFiles and isNotificationOnly must both be false")
	}
	covered := map[string]bool{}
	for _, cl := range bot.CommandLists {
		var titles []string
		for _, c := range cl.Commands {
			if c.Description == "" || len(c.Title) > 32 || len(c.Description) > 128 {
				t.Errorf("command %+v outside the schema's limits", c)
			}
			titles = append(titles, c.Title)
		}
		if strings.Join(titles, ",") != "help,my changes,change,who is" {
			t.Errorf("commands for %v: %v", cl.Scopes, titles)
		}
		for _, s := range cl.Scopes {
			covered[s] = true
		}
	}
	if !covered["personal"] || !covered["team"] {
		t.Errorf("command lists cover %v, want personal and team", covered)
	}

	// Icons: the names the manifest gives, the sizes Teams requires; the outline white on transparent.
	if m.Icons.Color != "color.png" || m.Icons.Outline != "outline.png" {
		t.Errorf("icons %+v", m.Icons)
	}
	colorIcon := decodeTeamsPNG(t, files["color.png"], 192)
	if _, _, _, a := colorIcon.At(0, 0).RGBA(); a != 0xffff {
		t.Errorf("color.png: the background is not opaque")
	}
	outline := decodeTeamsPNG(t, files["outline.png"], 32)
	var opaque, clear int
	for y := 0; y < 32; y++ {
		for x := 0; x < 32; x++ {
			c := color.NRGBAModel.Convert(outline.At(x, y)).(color.NRGBA)
			switch {
			case c.A == 0:
				clear++
			case c.R != 255 || c.G != 255 || c.B != 255:
				t.Fatalf("outline.png: pixel (%d,%d) is %v: neither white nor transparent", x, y, c)
			default:
				opaque++
			}
		}
	}
	if opaque == 0 || clear == 0 {
		t.Errorf("outline.png: %d white and %d transparent pixels, want both", opaque, clear)
	}
}

func decodeTeamsPNG(t *testing.T, b []byte, size int) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("icon: %v", err)
	}
	if r := img.Bounds(); r.Dx() != size || r.Dy() != size {
		t.Fatalf("icon is %dx%d, want %dx%d", r.Dx(), r.Dy(), size, size)
	}
	return img
}

// Without TEAMS_APP_ID the app id is the bot id; the default version is 1.0.0.
func TestTeamsAppPackageDefaults(t *testing.T) {
	out := filepath.Join(t.TempDir(), "teams.zip")
	log, err := runTeamsApp(t, nil, "--bot-id", teamsTestBotID, "-o", out)
	if err != nil {
		t.Fatalf("teams-app.sh: %v\n%s", err, log)
	}
	var m teamsManifest
	if err := json.Unmarshal(readTeamsZip(t, out)["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if m.ID != teamsTestBotID || m.Version != "1.0.0" || m.Bots[0].BotID != teamsTestBotID {
		t.Errorf("id %q, version %q, botId %q: want the bot id, 1.0.0 and the bot id", m.ID, m.Version, m.Bots[0].BotID)
	}
	if len(m.ValidDomains) == 0 || m.ValidDomains[0] != "app.leapchange.example" {
		t.Errorf("validDomains %v, want the default app host first", m.ValidDomains)
	}
}

func TestTeamsAppPackageRefuses(t *testing.T) {
	brokenSrc := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(brokenSrc, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"manifest.json", "color.png", "outline.png"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "infra", "teams-app", n))
		if err != nil {
			t.Fatal(err)
		}
		switch n {
		case "manifest.json":
			b = bytes.Replace(b, []byte(`"Leap Change for Microsoft Teams"`), []byte(`"{{UNKNOWN}}"`), 1)
		case "outline.png": // the colour icon in the outline's place: wrong size, not white on transparent
			b, err = os.ReadFile(filepath.Join(repoRoot(t), "infra", "teams-app", "color.png"))
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(brokenSrc, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"no bot id", nil, nil, []string{"BOT_APP_ID"}},
		{"bot id not a GUID", []string{"BOT_APP_ID=leap-bot"}, nil, []string{"leap-bot", "not a GUID"}},
		{"nil GUID", nil, []string{"--bot-id", "00000000-0000-0000-0000-000000000000"}, []string{"not a GUID"}},
		{"app id not a GUID", []string{"BOT_APP_ID=" + teamsTestBotID, "TEAMS_APP_ID=12345"}, nil, []string{"TEAMS_APP_ID", "not a GUID"}},
		{"bad version", []string{"BOT_APP_ID=" + teamsTestBotID}, []string{"--version", "1.0"}, []string{"1.0", "MAJOR.MINOR.PATCH"}},
		{"broken sources", []string{"BOT_APP_ID=" + teamsTestBotID}, []string{"--src", brokenSrc},
			[]string{"{{UNKNOWN}}", "must be 32x32", "white on transparent"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "teams.zip")
			log, err := runTeamsApp(t, tc.env, append(tc.args, "-o", out)...)
			if err == nil {
				t.Fatalf("teams-app.sh succeeded, want a refusal\n%s", log)
			}
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("output lacks %q:\n%s", w, log)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a zip was written despite the refusal (stat: %v)", err)
			}
		})
	}
}
