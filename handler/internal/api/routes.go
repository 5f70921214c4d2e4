package api

import "net/http"

// routes lists every contract path (openapi.json). Paths whose feature is a later issue answer 501.
func (s *Server) routes() {
	// The org itself: the only path served for an org that is not registered (PUT registers it)
	// or is being erased (GET shows it, DELETE continues).
	s.route("", map[string]handler{
		http.MethodPut:    s.putOrg,
		http.MethodGet:    s.getOrg,
		http.MethodDelete: s.deleteOrg,
	})
	s.route("/m365", map[string]handler{
		http.MethodGet:    s.getConnection,
		http.MethodDelete: s.disconnect,
	})
	s.route("/m365/connect", map[string]handler{http.MethodPost: s.connect})
	s.route("/m365/connect/confirm", map[string]handler{http.MethodPost: s.confirmConnection})
	s.route("/m365/settings", map[string]handler{
		http.MethodGet: s.getSettings,
		http.MethodPut: s.putSettings,
	})
	s.route("/m365/settings/mail", map[string]handler{
		http.MethodGet: s.getMailSettings,
		http.MethodPut: s.putMailSettings,
	})
	s.route("/m365/groups", map[string]handler{http.MethodGet: s.searchGroups})
	s.route("/m365/sync", map[string]handler{http.MethodPost: s.startSync})
	s.route("/m365/status", map[string]handler{http.MethodGet: s.status})
	s.route("/m365/sync/runs", map[string]handler{http.MethodGet: s.listRuns})
	s.route("/m365/sync/runs/{runId}", map[string]handler{http.MethodGet: s.getRun})
	s.route("/m365/sync/runs/{runId}/approve", map[string]handler{http.MethodPost: s.approveRun})
	s.route("/m365/sync/runs/{runId}/cancel", map[string]handler{http.MethodPost: s.cancelRun})
	s.route("/m365/conflicts", map[string]handler{http.MethodGet: s.listConflicts})
	s.route("/m365/conflicts/{stakeholderId}/resolve", map[string]handler{http.MethodPost: s.resolveConflict})
	s.route("/stakeholders", map[string]handler{
		http.MethodGet:  s.listStakeholders,
		http.MethodPost: s.createStakeholder,
	})
	s.route("/stakeholders/{id}", map[string]handler{
		http.MethodGet:    s.getStakeholder,
		http.MethodPut:    s.putStakeholder,
		http.MethodDelete: s.deleteStakeholder,
	})
	s.route("/groups", map[string]handler{http.MethodGet: s.listGroups})
	s.route("/groups/{id}/members", map[string]handler{http.MethodGet: s.groupMembers})
	s.route("/teams/connect", map[string]handler{http.MethodPost: s.connectTeams})
	s.route("/teams", map[string]handler{
		http.MethodGet:    s.getTeams,
		http.MethodDelete: s.disconnectTeams,
	})
	s.route("/teams/channels", map[string]handler{http.MethodGet: s.listTeamChannels})
	s.route("/teams/monitoring", map[string]handler{
		http.MethodGet: s.getMonitoring,
		http.MethodPut: s.putMonitoring,
	})
	s.route("/insights", map[string]handler{http.MethodGet: s.listInsights})
	s.route("/messages", map[string]handler{
		http.MethodPost: s.postMessage,
		http.MethodGet:  s.listMessages,
	})
	s.route("/messages/{batchId}", map[string]handler{
		http.MethodGet:    s.getMessage,
		http.MethodDelete: s.cancelMessage,
	})
	s.route("/changes/{changeId}", map[string]handler{
		http.MethodGet:    s.getChange,
		http.MethodPut:    s.putChange,
		http.MethodDelete: s.deleteChange,
	})
	s.mux.HandleFunc("/", s.notFound)
}
