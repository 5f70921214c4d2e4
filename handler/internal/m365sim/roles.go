package m365sim

// GraphAppID is the well-known application id of Microsoft Graph (its service principal's appId).
const GraphAppID = "00000003-0000-0000-c000-000000000000"

// GraphResource is the audience of tokens issued for Microsoft Graph.
const GraphResource = "https://graph.microsoft.com"

// Roles maps Microsoft Graph application permission names to the app role ids Microsoft Graph
// really uses (checked against the permissions reference, concepts/includes/permissions-ids.md of
// the microsoft-graph-docs repositories). Tokens carry the names in their roles claim;
// appRoleAssignments carry the ids.
var Roles = map[string]string{
	"User.Read.All":                                 "df021288-bdef-4463-88db-98f22de89214",
	"User.ReadWrite.All":                            "741f803b-c850-494e-b5df-cde7c675a1ca",
	"Directory.Read.All":                            "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
	"Directory.ReadWrite.All":                       "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
	"Group.Read.All":                                "5b567255-7703-4780-807c-7be8301ae99b",
	"Group.ReadWrite.All":                           "62a82d76-70ea-41e2-9197-370581804d09",
	"GroupMember.Read.All":                          "98830695-27a2-44f7-8c18-0c3ebc9698f6",
	"GroupMember.ReadWrite.All":                     "dbaae8cf-10b5-4b86-a4a1-f871c94c6695",
	"Application.Read.All":                          "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
	"Mail.Send":                                     "b633e1c5-b582-4048-a93e-9f11b44c7e96",
	"Team.ReadBasic.All":                            "2280dda6-0bfd-44ee-a2f4-cb867cfc4c1e",
	"Channel.ReadBasic.All":                         "59a6b24b-4225-4393-8165-ebaec5f55d7a",
	"ChannelMessage.Read.All":                       "7b2449af-6ccd-4f4d-9f78-e550c193f0d1",
	"TeamsAppInstallation.ReadWriteSelfForUser.All": "908de74d-f8b2-4d6b-a9ed-2a17b3b78179",
	"TeamsAppInstallation.ReadForUser.All":          "9ce09611-f4f7-4abd-a629-a05450422a97",
	"TeamsActivity.Send":                            "a267235f-af13-44dc-8385-c1dc93023186",
}

// Permissions a Graph route accepts; any one is enough (least privileged first).
var (
	permUsersRead   = []string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	permMembersRead = []string{"GroupMember.Read.All", "GroupMember.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
	permAppsRead    = []string{"Application.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
