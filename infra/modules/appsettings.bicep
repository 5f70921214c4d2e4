// The Function App's full app settings (DESIGN.md §2.2), written once the role assignments exist.
// This resource replaces the whole set, so it repeats the host settings that functionapp.bicep started
// the site with.
//
// Not set here, on purpose:
//   FUNCTIONS_WORKER_RUNTIME      Flex Consumption rejects it; the runtime is functionAppConfig.runtime = custom
//   FUNCTIONS_CUSTOMHANDLER_PORT  set by the Functions host for the handler process
//   AZURE_AUTHORITY_HOST          azidentity's default (public cloud); only tests point it elsewhere
//   TablesConnection / ServiceBusConnection (connection strings): identity-based __ forms are used instead

@description('Function App name.')
param functionAppName string

@description('Host storage account name (AzureWebJobsStorage__accountName).')
param hostStorageAccountName string

param appInsightsConnectionString string
param appInsightsEntraAuth bool = true

@description('Table service endpoint of the data account, e.g. https://leapdata.table.core.windows.net.')
param tableServiceUri string

@description('Service Bus namespace host name, e.g. leap-sb.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string

@description('Key Vault URI, e.g. https://kv.vault.azure.net/ (with the trailing slash).')
param keyVaultUri string

@description('Key Vault secret names: { m365ClientSecret, botAppSecret, stateSigningKey }.')
param vaultEntryNames object

param m365ClientId string
param graphBaseUrl string
param botAppId string
param botTenantId string
param botOpenIdMetadataUrl string
param publicBaseUrl string
param leapAppUrl string
param tablePrefix string = ''

@description('Further settings merged over the defaults (name -> value).')
param extraSettings object = {}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

var hostSettings = {
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
}

var entraTelemetrySettings = {
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
}
var telemetrySettings = appInsightsEntraAuth ? entraTelemetrySettings : {}

var appSettings = {
  // Table Storage with the managed identity (Go aztables client reads the endpoint itself).
  TablesConnection__tableServiceUri: tableServiceUri
  // Service Bus triggers/outputs (extension 5.x) and the Go azservicebus sender.
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  TABLE_PREFIX: tablePrefix
  M365_CLIENT_ID: m365ClientId
  M365_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${vaultEntryNames.m365ClientSecret})'
  GRAPH_BASE_URL: graphBaseUrl
  BOT_APP_ID: botAppId
  BOT_APP_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${vaultEntryNames.botAppSecret})'
  BOT_TENANT_ID: botTenantId
  BOT_OPENID_METADATA_URL: botOpenIdMetadataUrl
  PUBLIC_BASE_URL: publicBaseUrl
  LEAP_APP_URL: leapAppUrl
  STATE_SIGNING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${vaultEntryNames.stateSigningKey})'
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(hostSettings, telemetrySettings, appSettings, extraSettings)
}
