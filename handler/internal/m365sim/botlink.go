package m365sim

import "github.com/google/uuid"

// botInstalled and botUninstalled link the Graph Teams app installation routes to the Bot
// Framework side (botframework*.go).

// botInstalled installs the bot for the user (sends reach them, again after an uninstall or a
// block) and, asynchronously, sends the bot the conversationUpdate (membersAdded: the bot, from:
// the user) and installationUpdate (action add) Teams sends on installation. It returns at
// once (BotWait waits for the activities) and takes only the bot's own lock, so the Graph
// installedApps routes may call it with s.mu held.
func (s *Server) botInstalled(tenant, userObjectID string) {
	s.setBotInstalled(tenant, userObjectID, true)
}

// botUninstalled marks the user's conversation blocked (sends and updates answer 403
// MessageWritesBlocked) and, asynchronously, sends the bot the installationUpdate (action
// remove). Like botInstalled it may be called with s.mu held.
func (s *Server) botUninstalled(tenant, userObjectID string) {
	s.setBotInstalled(tenant, userObjectID, false)
}

// setBotInstalled records the user's conversation as installed or blocked and, when a bot
// is registered, sends it the activities Teams sends on that change.
func (s *Server) setBotInstalled(tenant, userObjectID string, installed bool) {
	b := s.lockBot()
	c := b.convLocked(tenant, userObjectID)
	c.installed, c.blocked = installed, !installed
	appID, endpoint := b.appID, b.endpoint
	b.pending.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.pending.Done()
		if appID == "" || endpoint == "" {
			return
		}
		action := "remove"
		if installed {
			bot := map[string]any{"id": "28:" + appID}
			s.deliver(tenant, userObjectID, map[string]any{"type": "conversationUpdate", "id": "f:" + uuid.NewString(), "membersAdded": []any{bot}})
			action = "add"
		}
		s.deliver(tenant, userObjectID, map[string]any{"type": "installationUpdate", "id": "f:" + uuid.NewString(), "action": action})
	}()
}

// BotInstall is the Bot Framework side of installing the app for the user (what
// botInstalled does for the Graph installedApps route), for tests of the bot alone: no Graph
// installation is recorded.
func (s *Server) BotInstall(tenant, userObjectID string) { s.botInstalled(tenant, userObjectID) }
