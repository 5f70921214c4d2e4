package keywords

// A compact Aho-Corasick automaton over bytes: a trie with failure links and dictionary
// suffix links, reporting every occurrence of every pattern (overlapping ones too) in one
// pass.
//
// Why not a library: the one candidate in the module index, github.com/coregx/ahocorasick
// v0.3.1, fits the API (FindAllOverlapping) but compiles a dense DFA of states × byte
// classes × 4 bytes. Within our own limits (500 keywords of 100 runes) that is 150 000
// states for CJK keywords: 73 MiB live and 168 MiB allocated per Compile, half a second,
// which a settings request could trigger at will. Here a node stores only the edges it has
// (sorted, searched linearly; the root has a 256-entry table), so the same worst case is
// 8 MiB live (37 MiB allocated while building), and the scan costs less than folding the
// text does anyway. TestAutomatonAgainstNaive checks it against strings.Index.

type acNode struct {
	edges []acEdge // sorted by byte
	fail  int32    // longest proper suffix that is a trie node
	dict  int32    // nearest node along fail links that ends a pattern, or -1
	out   int32    // the pattern ending here, or -1
}

type acEdge struct {
	b  byte
	to int32
}

type automaton struct {
	nodes []acNode
	root  [256]int32 // the root's transitions, complete (0 = stay at the root)
	lens  []int      // pattern lengths in bytes
}

// newAutomaton builds the automaton for distinct, non-empty patterns.
func newAutomaton(patterns []string) *automaton {
	a := &automaton{nodes: []acNode{{dict: -1, out: -1}}, lens: make([]int, len(patterns))}
	for id, p := range patterns {
		a.lens[id] = len(p)
		n := int32(0)
		for i := 0; i < len(p); i++ {
			n = a.child(n, p[i], true)
		}
		a.nodes[n].out = int32(id)
	}
	for _, e := range a.nodes[0].edges {
		a.root[e.b] = e.to
	}
	// Breadth first: a node's fail link is known before its children's.
	queue := make([]int32, 0, len(a.nodes))
	for _, e := range a.nodes[0].edges {
		queue = append(queue, e.to) // fail = 0, dict = -1 already
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, e := range a.nodes[n].edges {
			f := a.step(a.nodes[n].fail, e.b)
			a.nodes[e.to].fail = f
			if a.nodes[f].out >= 0 {
				a.nodes[e.to].dict = f
			} else {
				a.nodes[e.to].dict = a.nodes[f].dict
			}
			queue = append(queue, e.to)
		}
	}
	return a
}

// child returns n's child on b, or -1; with add, it creates a missing one.
func (a *automaton) child(n int32, b byte, add bool) int32 {
	edges := a.nodes[n].edges
	i := 0
	for i < len(edges) && edges[i].b < b {
		i++
	}
	if i < len(edges) && edges[i].b == b {
		return edges[i].to
	}
	if !add {
		return -1
	}
	to := int32(len(a.nodes))
	a.nodes = append(a.nodes, acNode{dict: -1, out: -1})
	edges = append(edges, acEdge{})
	copy(edges[i+1:], edges[i:])
	edges[i] = acEdge{b, to}
	a.nodes[n].edges = edges
	return to
}

// step is the transition from n on b, following failure links.
func (a *automaton) step(n int32, b byte) int32 {
	for n != 0 {
		if to := a.child(n, b, false); to >= 0 {
			return to
		}
		n = a.nodes[n].fail
	}
	return a.root[b]
}

// scan calls found for every occurrence of every pattern in t, in order of end; it stops
// when found returns false.
func (a *automaton) scan(t string, found func(id, start, end int) bool) {
	n := int32(0)
	for i := 0; i < len(t); i++ {
		n = a.step(n, t[i])
		o := n
		if a.nodes[o].out < 0 {
			o = a.nodes[o].dict
		}
		for o >= 0 {
			id := int(a.nodes[o].out)
			if !found(id, i+1-a.lens[id], i+1) {
				return
			}
			o = a.nodes[o].dict
		}
	}
}
