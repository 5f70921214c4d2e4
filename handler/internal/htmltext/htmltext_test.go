package htmltext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"plain", "hello world", "hello world"},
		{"empty", "", ""},
		{"paragraphs", "<p>first</p><p>second</p>", "first\nsecond"},
		{"divs and br", "<div>one<br>two<br/>three</div><div>four</div>", "one\ntwo\nthree\nfour"},
		{"inline tags", "a <b>bold</b> and <i>it</i>alic", "a bold and italic"},
		{"mention", `<p><at id="0">Ada Lovelace</at> can you check?</p>`, "Ada Lovelace can you check?"},
		{"two mentions", `<at id="0">Ada</at>, <at id="1">Grace Hopper</at>: hi`, "Ada, Grace Hopper: hi"},
		{"list", "<p>Items:</p><ul><li>one</li><li>two</li></ul><ol><li>three</li></ol>", "Items:\none\ntwo\nthree"},
		{"link text", `see <a href="https://example.com/x">the doc</a> now`, "see the doc now"},
		{"link without text", `see <a href="https://example.com/x"></a> now`, "see https://example.com/x now"},
		{"emoji element", `great <emoji id="smile" alt="😀" title="Smile"></emoji> job`, "great 😀 job"},
		{"emoji img", `fire<img itemtype="http://schema.skype.com/Emoji" alt="🔥" src="x.png">alarm`, "fire🔥alarm"},
		{"image alt", `<img src="a.png" alt="network diagram">`, "network diagram"},
		{"image without alt", `before<img src="a.png">after`, "beforeafter"},
		{"attachment", `<p>report</p><attachment id="a1b2"></attachment>`, "report"},
		{"attachment between", `see<attachment id="a1"></attachment>this`, "see\nthis"},
		{"entities", "R&amp;D &lt;b&gt; caf&eacute; &#233;&#xE9; &#x1F600; &quot;q&quot;", `R&D <b> café éé 😀 "q"`},
		{"nbsp", "a&nbsp;&nbsp;b\u00a0c", "a b c"},
		{"whitespace collapsed", "  lots   of\n\tspace  ", "lots of space"},
		{"empty paragraphs dropped", "<p>a</p><p></p><p>&nbsp;</p><p>b</p>", "a\nb"},
		{"lines trimmed", "<p>  a  </p><div> b </div>", "a\nb"},
		{"script dropped", "x<script>alert('<b>hi</b>')</script>y", "xy"},
		{"style dropped", "<style>p{color:red}</style><p>text</p>", "text"},
		{"unclosed script", "x<script>var a = 1", "x"},
		{"title dropped", "<title>t</title>body", "body"},
		{"comment", "a<!-- hidden -->b", "ab"},
		{"doctype", "<!DOCTYPE html><html><body><p>hi</p></body></html>", "hi"},
		{"malformed", "<p>unclosed <b>bold <i>x</p></div><<p>y", "unclosed bold x\n<\ny"},
		{"lone angle", "a < b > c", "a < b > c"},
		{"broken tag at end", "text <a href=", "text"},
		{"table", "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
		{"pre keeps lines", "<pre>line 1\nline 2</pre>after", "line 1\nline 2\nafter"},
		{"codeblock", `<codeblock class="Go"><code>x := 1</code></codeblock>`, "x := 1"},
		{"headings", "<h1>Title</h1>text", "Title\ntext"},
		{"uppercase tags", "<P>a</P><BR>b", "a\nb"},
		{"invalid UTF-8", "a\xffb", "a\ufffdb"},
		{"NUL", "a\x00b", "a\ufffdb"},
		{"CRLF", "a\r\nb", "a b"},
		{"Teams message", `<div><div><at id="0">Ada Lovelace</at>&nbsp;the <strong>deploy</strong> to New&nbsp;York failed 😞</div>` +
			`<div>&nbsp;</div><div>See <a href="https://contoso.sharepoint.com/x" title="x">runbook</a></div></div>`,
			"Ada Lovelace the deploy to New York failed 😞\nSee runbook"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Text(c.in); got != c.want {
				t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestTextCapsInput(t *testing.T) {
	in := strings.Repeat("é", MaxInput) // 2 bytes each: the cut falls inside the input
	got := Text(in)
	if !utf8.ValidString(got) || len(got) > MaxInput || len(got) < MaxInput-1 {
		t.Errorf("Text of %d bytes gave %d bytes (valid %v)", len(in), len(got), utf8.ValidString(got))
	}
}

func FuzzText(f *testing.F) {
	for _, s := range []string{
		"", "plain", `<p><at id="0">Ada</at> hi</p>`, "<ul><li>a<li>b</ul>", "a&amp;b&#x1F600;&nbsp;",
		"<script>x</script>y", `<img alt="🔥"><emoji alt="😀">`, "<pre>a\nb</pre>", "<a href=x></a>",
		"<<p>>", "\xff\x00", "<table><td>a<td>b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := Text(in)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		for _, line := range strings.Split(out, "\n") {
			if line == "" && out != "" {
				t.Fatalf("empty line in %q", out)
			}
			if strings.TrimSpace(line) != line || strings.Contains(line, "  ") || strings.ContainsAny(line, "\r\t") {
				t.Fatalf("whitespace not collapsed in line %q", line)
			}
		}
		// Without markup, the text is the input with its whitespace collapsed.
		if !strings.ContainsAny(in, "<&\x00") && utf8.ValidString(in) && len(in) <= MaxInput {
			if want := strings.Join(strings.Fields(in), " "); out != want {
				t.Fatalf("Text(%q) = %q, want %q", in, out, want)
			}
		}
	})
}
