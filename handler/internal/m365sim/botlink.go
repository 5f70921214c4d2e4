package m365sim

// botInstalled and botUninstalled link the Graph Teams app installation routes to the Bot
// Framework side: installing the bot for a user makes Teams send the bot a conversationUpdate.
// (Placeholder bodies until the Bot Framework side of the simulator lands.)
func (s *Server) botInstalled(tenant, userObjectID string) {}

func (s *Server) botUninstalled(tenant, userObjectID string) {}
