package dirsync

// SetGroupChunk makes the groups phase settle n users (or rows) per call until restore.
func SetGroupChunk(n int) (restore func()) {
	old := groupChunk
	groupChunk = n
	return func() { groupChunk = old }
}
