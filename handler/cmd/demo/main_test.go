package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/leapchange/m365/handler/internal/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

// TestDemoRunsEndToEnd is the acceptance check of the demo command, at the size the README runs
// it (no flags): the real handler binary, run by the host stand-in, syncs a generated tenant from
// the simulated tenant into Azurite, in full and then in delta, and the summary says so.
func TestDemoRunsEndToEnd(t *testing.T) {
	conn := azuritetest.Start(t)
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "AZURITE_TABLES_CONNECTION" {
			return conn
		}
		return os.Getenv(k)
	}
	err := run(t.Context(), []string{"-root", "../../.."}, getenv, &out, &errOut)
	if err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`connection: connected to tenant 3b9e7c21-4f0a-4d6b-9a8e-5c1d2e3f4a5b; granted \[User.Read.All GroupMember.Read.All Mail.Send\]; missing \[\]`),
		regexp.MustCompile(`the callback sent the admin back to http://localhost:3000/settings/integrations\?m365=confirm&org=demo&ticket=<one-time ticket>`),
		regexp.MustCompile(`the web app confirmed the ticket for org demo \(POST /m365/connect/confirm\)`),
		regexp.MustCompile(`succeeded full sync in [0-9.]+s — 5002 processed: \d+ created, 1 updated, 0 unchanged, 0 reactivated, 0 skipped, 3 invalid, [1-9]\d* excluded \([1-9]\d* disabled and never synced, 0 deleted, 2 outside the group filter\)`),
		regexp.MustCompile(`also: 0 conflicts resolved, 0 deactivated, 1 linked by email`),
		regexp.MustCompile(`the manual stakeholder was linked, not duplicated: source entra, externalId [0-9a-f-]{36}, influence kept: high`),
		regexp.MustCompile(`succeeded delta sync in [0-9.]+s — [1-9]\d* processed: 0 created, [1-9]\d* updated, \d+ unchanged, \d+ reactivated, 0 skipped, \d+ invalid, \d+ excluded`),
		regexp.MustCompile(`also: 1 conflicts resolved`),
		regexp.MustCompile(`role: Entra "Head of Operations \(set in Entra\)" vs Leap "Change lead \(set in Leap Change\)" → "Head of Operations \(set in Entra\)"`),
		regexp.MustCompile(`stakeholders would be deactivated \(out of the filter\); nothing was written`),
		regexp.MustCompile(`next scheduled sync 20\d\d-\d\d-\d\dT(06|18):00:00\+0[12]:00`),
		regexp.MustCompile(`queue sync-jobs\s+\{Active:0 Scheduled:0 Locked:0 DeadLettered:0`),
		regexp.MustCompile(`health: healthy, version \S+; tableStorage healthy=true \(\d+ ms\) serviceBus healthy=true`),
		regexp.MustCompile(`batch b[0-9a-f]{20} to group "[^"]+" \(\d+ members\) and Pat Typo <pat.typo@fabrikam.invalid>: \d+ recipients, expected done by`),
		regexp.MustCompile(`settled  sent \d+, queued 0, sending 0, scheduled 0, failed 1, skipped 0`),
		regexp.MustCompile(`failed: \d+-mail <pat.typo@fabrikam.invalid>: invalid_recipient — Exchange refused the recipient's address`),
		regexp.MustCompile(`limits tripped: 0; addresses mailed twice: 0`),
		regexp.MustCompile(`queue outbound-mail\s+\{Active:0 Scheduled:0 Locked:0 DeadLettered:0`),
		regexp.MustCompile(`Teams connected: app \S+ \(from the catalog\)`),
		regexp.MustCompile(`settled: sent 8, unreachable 0, failed 0, skipped 0`),
		regexp.MustCompile(`the app was installed through Graph for 5 people who never opened it`),
		regexp.MustCompile(`clicked \[[^\]]+\]; Teams shows the bot's answer \(200\): .*you answered`),
		regexp.MustCompile(`asked the bot "my changes" and saw: Changes that impact you \(2\)`),
		regexp.MustCompile(`a forged activity \(wrong signing key\) was answered 401, nothing posted`),
		regexp.MustCompile(`, 0 Teams limit violations`),
		regexp.MustCompile(`queue outbound-teams\s+\{Active:0 Scheduled:0 Locked:0 DeadLettered:0`),
		regexp.MustCompile(`1 subscription\(s\) \(resource data encrypted: true, expires \S+, healthy true\)`),
		regexp.MustCompile(`insight \(edited\): \[expense tool go-live\]`),
		regexp.MustCompile(`insight \(deleted\): \[出張\]`),
		regexp.MustCompile(`insight: \[go-live Büro\] in "Das neue buro`),
		regexp.MustCompile(`alerts: 4 by mail, 4 in Teams \(one per matching message\); webhook acks p50 \S+, p99 \S+, \d+ slow, 0 failed`),
		regexp.MustCompile(`queue channel-events\s+\{Active:0 Scheduled:0 Locked:0 DeadLettered:0`),
		regexp.MustCompile(`DEMO OK`),
	} {
		if !want.MatchString(s) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// The history is read once the org has settled: no run in it is still going (its seconds "-").
	if unfinished := regexp.MustCompile(`(?m)^\S+\s+(full|delta)\s.*\s-(\s+\d+){6}$`).FindString(s); unfinished != "" {
		t.Errorf("the sync history shows a run that has not finished: %q\n%s", unfinished, s)
	}
	if strings.Contains(errOut.String(), "panic") {
		t.Errorf("stderr shows a panic:\n%s", errOut.String())
	}
}

func TestDemoNeedsAzurite(t *testing.T) {
	err := run(t.Context(), nil, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "scripts/demo.sh") {
		t.Errorf("err = %v, want advice to run scripts/demo.sh", err)
	}
}
