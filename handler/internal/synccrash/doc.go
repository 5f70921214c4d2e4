// Package synccrash holds the sync crash test: the real handler binary, run by the local host
// stand-in against Azurite and the simulated tenant, is killed during a full sync, and then the
// queue holding the run's step is lost with the host. The run must recover (its lost step
// republished by the scheduler's tick) and finish with exactly one stakeholder per user. It has
// no code of its own; the test lives apart because it builds and runs the whole handler.
package synccrash
