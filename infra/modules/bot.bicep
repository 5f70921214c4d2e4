// Azure Bot registration for the Teams bot: messaging endpoint = BotMessages (POST /api/messages),
// Teams channel on. The Entra app registration behind BOT_APP_ID is created outside this template.

@description('Bot resource name (globally unique handle).')
param name string

@description('Display name shown in Teams.')
param displayName string

@description('BOT_APP_ID: the Entra application (client) id of the bot.')
param botAppId string

@description('BOT_TENANT_ID: tenant of the bot\'s app registration.')
param botTenantId string

@description('How the bot app authenticates. New multi-tenant bot registrations are no longer offered by Azure Bot Service.')
@allowed([
  'SingleTenant'
  'MultiTenant'
])
param msaAppType string = 'SingleTenant'

@description('HTTPS messaging endpoint, e.g. https://<app>.azurewebsites.net/api/messages.')
param endpoint string

@description('F0 is enough for the Teams channel (a standard channel).')
@allowed([
  'F0'
  'S1'
])
param sku string = 'F0'

param tags object = {}

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: name
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: displayName
    endpoint: endpoint
    msaAppId: botAppId
    msaAppType: msaAppType
    msaAppTenantId: msaAppType == 'SingleTenant' ? botTenantId : null
    disableLocalAuth: false
    publicNetworkAccess: 'Enabled'
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
    }
  }
}

output name string = bot.name
output endpoint string = bot.properties.endpoint
