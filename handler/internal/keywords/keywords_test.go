package keywords

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/leapchange/m365/handler/internal/fielderr"
	"github.com/leapchange/m365/handler/internal/htmltext"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		name     string
		keywords []string
		text     string
		want     []string
	}{
		{"case", []string{"Outage"}, "We have an OUTAGE in prod", []string{"Outage"}},
		{"case folding ß", []string{"straße"}, "Closed: STRASSE 5", []string{"straße"}},
		{"German ß in text", []string{"strasse"}, "an der Straße", []string{"strasse"}},
		{"Turkish dotted İ", []string{"istanbul"}, "İSTANBUL office", []string{"istanbul"}},
		{"Turkish dotless ı", []string{"IĞDIR"}, "ığdır deposu", []string{"IĞDIR"}},
		{"punctuation around", []string{"outage"}, "...outage!!! (outage?)", []string{"outage"}},
		{"hashtag", []string{"outage"}, "#outage", []string{"outage"}},
		{"accents in text", []string{"cafe"}, "Le Café est fermé", []string{"cafe"}},
		{"accents in keyword", []string{"Crème brûlée"}, "creme brulee for dessert", []string{"Crème brûlée"}},
		{"accents both", []string{"Zoë"}, "ask zoë", []string{"Zoë"}},
		{"fullwidth", []string{"outage"}, "ＯＵＴＡＧＥ", []string{"outage"}},
		{"phrase", []string{"new york"}, "flights to New York today", []string{"new york"}},
		{"phrase extra spaces", []string{"new york"}, "New    York", []string{"new york"}},
		{"phrase newline", []string{"new york"}, "New\nYork", []string{"new york"}},
		{"phrase punctuation", []string{"new york"}, "new-york, new/york", []string{"new york"}},
		{"phrase emoji between", []string{"new york"}, "New 🗽 York", []string{"new york"}},
		{"phrase emoji glued", []string{"new york"}, "New🗽York", []string{"new york"}},
		{"phrase keyword punctuation", []string{"e-mail"}, "send an E MAIL", []string{"e-mail"}},
		{"phrase keyword extra spaces", []string{"  new   york  "}, "NEW YORK", []string{"  new   york  "}},
		{"phrase split no match", []string{"new york"}, "new jersey and york", nil},
		{"partial word prefix", []string{"train"}, "training starts", nil},
		{"partial word suffix", []string{"train"}, "retrain it", nil},
		{"no plural folding", []string{"train"}, "two trains", nil},
		{"whole word", []string{"train"}, "the train, and train-station", []string{"train"}},
		{"phrase inside longer word", []string{"new york"}, "new yorker", nil},
		{"emoji around", []string{"fire"}, "🔥fire🔥", []string{"fire"}},
		{"emoji inside word splits", []string{"fire"}, "fi🔥re", nil},
		{"emoji ZWJ sequence", []string{"team"}, "👩‍💻team👨‍👩‍👧", []string{"team"}},
		{"soft hyphen inside word", []string{"contract"}, "con\u00adtract", []string{"contract"}},
		{"HTML converted", []string{"budget cut"}, htmltext.Text("<p>The <b>budget</b></p><p>cut &amp; more</p>"), []string{"budget cut"}},
		{"entity converted", []string{"r&d"}, htmltext.Text("<div>R&amp;D update</div>"), []string{"r&d"}},
		{"mention", []string{"Ada Lovelace"}, htmltext.Text(`<p><at id="0">Ada Lovelace</at> please look</p>`), []string{"Ada Lovelace"}},
		{"mention at sign", []string{"ada"}, "@Ada ping", []string{"ada"}},
		{"Chinese substring", []string{"东京"}, "我明天去东京出差", []string{"东京"}},
		{"Chinese traditional", []string{"東京"}, "東京都", []string{"東京"}},
		{"Japanese kana", []string{"コーヒー"}, "今日はコーヒーを飲みました", []string{"コーヒー"}},
		{"Japanese halfwidth", []string{"コーヒー"}, "ｺｰﾋｰです", []string{"コーヒー"}},
		{"Japanese voicing kept", []string{"ガス"}, "カスです", nil},
		{"Japanese hiragana", []string{"しごと"}, "きょうのしごとはおわり", []string{"しごと"}},
		{"Korean particle", []string{"서울"}, "서울에서 만나요", []string{"서울"}},
		{"Thai substring", []string{"ประชุม"}, "วันนี้มีการประชุมตอนบ่าย", []string{"ประชุม"}},
		{"mixed scripts", []string{"tokyo", "大学"}, "東京tokyo大学", []string{"tokyo", "大学"}},
		{"mixed scripts Latin partial", []string{"kyo"}, "東京tokyo大学", nil},
		{"Cyrillic", []string{"москва"}, "Встреча в МОСКВЕ и Москва!", []string{"москва"}},
		{"Greek accents", []string{"αθηνα"}, "Αθήνα", []string{"αθηνα"}},
		{"Arabic", []string{"مرحبا"}, "قال مرحبا للجميع", []string{"مرحبا"}},
		{"Vietnamese", []string{"Hà Nội"}, "gặp nhau ở HA NOI nhé", []string{"Hà Nội"}},
		{"Hindi marks kept", []string{"हिंदी"}, "मुझे हिंदी आती है", []string{"हिंदी"}},
		{"Hindi whole word", []string{"हिंद"}, "मुझे हिंदी आती है", nil},
		{"ligature", []string{"office"}, "the oﬃce", []string{"office"}},
		{"number", []string{"100"}, "costs $100.", []string{"100"}},
		{"number partial", []string{"100"}, "1000 or 100k", nil},
		{"decimal", []string{"3.5"}, "version 3,5 is out", []string{"3.5"}},
		{"repeated in text", []string{"outage"}, "outage outage OUTAGE", []string{"outage"}},
		{"repeated in list", []string{"outage", "outage"}, "outage", []string{"outage"}},
		{"spellings of one form", []string{"Café", "cafe"}, "CAFE", []string{"Café", "cafe"}},
		{"overlapping", []string{"new york", "york", "new"}, "New York", []string{"new york", "york", "new"}},
		{"overlapping nested", []string{"york city", "new york"}, "new york city", []string{"york city", "new york"}},
		{"list order", []string{"b", "a"}, "a b", []string{"b", "a"}},
		{"none", []string{"outage"}, "all good", nil},
		{"empty text", []string{"outage"}, "", nil},
		{"invalid UTF-8 text", []string{"ok"}, "ok\xff", []string{"ok"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Compile(c.keywords)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match(c.text); !slices.Equal(got, c.want) {
				t.Errorf("Match(%q) with %q = %q, want %q", c.text, c.keywords, got, c.want)
			}
		})
	}
}

func TestCompileInvalid(t *testing.T) {
	for _, c := range []struct {
		name     string
		keywords []string
		fields   []string
	}{
		{"none", nil, []string{"keywords"}},
		{"too many", make501(), []string{"keywords"}},
		{"blank", []string{"ok", "  "}, []string{"keywords[1]"}},
		{"empty", []string{""}, []string{"keywords[0]"}},
		{"punctuation only", []string{"ok", "ok2", "!?."}, []string{"keywords[2]"}},
		{"emoji only", []string{"🔥🔥"}, []string{"keywords[0]"}},
		{"too long", []string{strings.Repeat("é", 101)}, []string{"keywords[0]"}},
		{"invalid UTF-8", []string{"a\xff"}, []string{"keywords[0]"}},
		{"several", []string{"", "fine", "…"}, []string{"keywords[0]", "keywords[2]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.keywords)
			var bad fielderr.List
			if !errors.As(err, &bad) {
				t.Fatalf("error %v, want a fielderr.List", err)
			}
			var fields []string
			for _, f := range bad {
				fields = append(fields, f.Field)
			}
			if !slices.Equal(fields, c.fields) {
				t.Errorf("fields %q, want %q (%v)", fields, c.fields, err)
			}
		})
	}
	if _, err := Compile([]string{strings.Repeat("語", 100)}); err != nil {
		t.Errorf("100 characters: %v", err)
	}
}

func make501() []string {
	k := make([]string, 501)
	for i := range k {
		k[i] = fmt.Sprint("k", i)
	}
	return k
}

func TestKeywordsCopy(t *testing.T) {
	in := []string{"a", "b"}
	m, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = "x"
	got := m.Keywords()
	got[1] = "y"
	if k := m.Keywords(); !slices.Equal(k, []string{"a", "b"}) {
		t.Errorf("Keywords() = %q", k)
	}
}

// TestAutomatonAgainstNaive checks the automaton finds exactly what strings.Index finds.
func TestAutomatonAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, 1+r.IntN(n))
		for i := range b {
			b[i] = "abc"[r.IntN(3)]
		}
		return string(b)
	}
	for range 200 {
		set := map[string]bool{}
		for range 1 + r.IntN(8) {
			set[word(4)] = true
		}
		var pats []string
		for p := range set {
			pats = append(pats, p)
		}
		text := word(40)
		type hit struct{ id, start, end int }
		var got, want []hit
		newAutomaton(pats).scan(text, func(id, s, e int) bool { got = append(got, hit{id, s, e}); return true })
		for id, p := range pats {
			for s := 0; s+len(p) <= len(text); s++ {
				if text[s:s+len(p)] == p {
					want = append(want, hit{id, s, s + len(p)})
				}
			}
		}
		cmp := func(a, b hit) int {
			if a.end != b.end {
				return a.end - b.end
			}
			return a.id - b.id
		}
		slices.SortFunc(got, cmp)
		slices.SortFunc(want, cmp)
		if !slices.Equal(got, want) {
			t.Fatalf("patterns %q in %q: got %v, want %v", pats, text, got, want)
		}
	}
}

func TestExcerpt(t *testing.T) {
	long := "Some words before the point. " + strings.Repeat("filler ", 20) + "The NEW  York outage started at noon and lasted for hours, " + strings.Repeat("more ", 30)
	for _, c := range []struct {
		name    string
		text    string
		matches []string
		max     int
		want    string
	}{
		{"fits", "short\n\ntext  here", []string{"text"}, 50, "short text here"},
		{"around mention", long, []string{"new york"}, 60, "…filler The NEW York outage started at noon and…"},
		{"no match", long, []string{"absent"}, 20, "Some words before…"},
		{"no matches given", long, nil, 20, "Some words before…"},
		{"mention longer than room", long, []string{"new york outage started"}, 10, "NEW York…"},
		{"CJK", strings.Repeat("あ", 50) + "東京" + strings.Repeat("い", 50), []string{"東京"}, 12, "…ああ東京いいいいいい…"},
		{"zero", "text", []string{"text"}, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Excerpt(c.text, c.matches, c.max)
			if got != c.want {
				t.Errorf("Excerpt = %q, want %q", got, c.want)
			}
			if n := len([]rune(got)); n > c.max {
				t.Errorf("Excerpt has %d runes, more than %d", n, c.max)
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	words := strings.Fields("the outage deploy server latency budget customer incident release rollback meeting contract invoice security breach login password vendor migration database cluster")
	var kws []string
	for i := range 500 {
		kws = append(kws, fmt.Sprintf("%s %s%d", words[r.IntN(len(words))], words[r.IntN(len(words))], i))
	}
	m, err := Compile(kws)
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for sb.Len() < 4096 {
		sb.WriteString(words[r.IntN(len(words))])
		sb.WriteString([]string{" ", ", ", ". ", " 🙂 ", " Café "}[r.IntN(5)])
	}
	text := sb.String()[:4096]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		m.Match(text)
	}
}

func BenchmarkMatchCJK(b *testing.B) {
	var kws []string
	for i := range 500 {
		kws = append(kws, string([]rune{rune(0x4E00 + i*7), rune(0x4E01 + i*13)}))
	}
	m, err := Compile(kws)
	if err != nil {
		b.Fatal(err)
	}
	rs := make([]rune, 1366) // 4 KiB of 3-byte runes
	for i := range rs {
		rs[i] = rune(0x4E00 + (i*31)%5000)
	}
	text := string(rs)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		m.Match(text)
	}
}

func BenchmarkCompile(b *testing.B) {
	var kws []string
	for i := range 500 {
		kws = append(kws, fmt.Sprintf("keyword phrase number %d", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(kws); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("new york, train", "New 🗽 York training train")
	f.Add("東京\nコーヒー", "東京tokyoコーヒー")
	f.Add("Straße\nığdır", "STRASSE IĞDIR")
	f.Add("a\xff", "\xff\xfe")
	f.Fuzz(func(t *testing.T, list, text string) {
		kws := strings.Split(list, "\n")
		m, err := Compile(kws)
		if err != nil {
			return
		}
		got := m.Match(text)
		for i, k := range got {
			if !slices.Contains(kws, k) {
				t.Fatalf("Match returned %q, not a keyword", k)
			}
			if slices.Contains(got[:i], k) {
				t.Fatalf("Match returned %q twice", k)
			}
		}
		// A keyword is always found in a text made of it.
		if got := m.Match(kws[0]); !slices.Contains(got, kws[0]) {
			t.Fatalf("keyword %q not found in itself: %q", kws[0], got)
		}
		for _, max := range []int{1, 2, 3, 10, 40} {
			e := Excerpt(text, got, max)
			if n := utf8.RuneCountInString(e); n > max || !utf8.ValidString(e) {
				t.Fatalf("Excerpt(%q, %q, %d) = %q: %d runes", text, got, max, e, n)
			}
		}
		if len(got) > 0 && !strings.ContainsRune(Excerpt(text, got, 1000), '…') && len(text) < 900 {
			// A short text is its own excerpt, whitespace collapsed.
			if e, want := Excerpt(text, got, 1000), strings.Join(strings.Fields(text), " "); e != want && utf8.ValidString(text) {
				t.Fatalf("Excerpt(%q) = %q, want %q", text, e, want)
			}
		}
	})
}
