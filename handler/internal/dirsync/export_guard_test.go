package dirsync

// SetGuardPage makes the guard phase read n pending deactivations per call until restore.
func SetGuardPage(n int) (restore func()) {
	old := guardPage
	guardPage = n
	return func() { guardPage = old }
}

// SetPendingCacheMax makes a step keep at most n pending deactivations in memory until restore.
func SetPendingCacheMax(n int) (restore func()) {
	old := pendingCacheMax
	pendingCacheMax = n
	return func() { pendingCacheMax = old }
}
