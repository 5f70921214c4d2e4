// The Function App's complete app settings (README, Settings), computed here and written by functionapp.bicep
// in the site resource itself (siteConfig.appSettings). This module creates no resource.
//
// Why in the site: a PUT of Microsoft.Web/sites replaces the whole app-settings set with the site's
// siteConfig.appSettings. When the site carried only the host settings and a separate
// Microsoft.Web/sites/config 'appsettings' resource wrote the rest afterwards, every redeploy left the app
// without its settings between the two writes, and the handler could not start. Now there is one write,
// with everything. That works from the first deployment on because the app runs as a user-assigned
// identity whose role assignments (Key Vault Secrets User included) are deployed before the site
// (identity.bicep, roles.bicep); the site names it in keyVaultReferenceIdentity.
//
// Settings added by hand in the portal are removed by the next deployment: add them through
// main.bicep's extraAppSettings instead.
//
// Not set here, on purpose:
//   FUNCTIONS_WORKER_RUNTIME      Flex Consumption rejects it; the runtime is functionAppConfig.runtime = custom
//   FUNCTIONS_CUSTOMHANDLER_PORT  set by the Functions host for the handler process
//   AZURE_AUTHORITY_HOST          azidentity's default (public cloud); only tests point it elsewhere
//   TablesConnection / ServiceBusConnection (connection strings): identity-based __ forms are used instead

@description('Host storage account name (AzureWebJobsStorage__accountName).')
param hostStorageAccountName string

@description('Client id of the app\'s user-assigned identity (every __clientId setting).')
param identityClientId string

param appInsightsConnectionString string
param appInsightsEntraAuth bool = true

@description('Table service endpoint of the data account, e.g. https://leapdata.table.core.windows.net.')
param tableServiceUri string

@description('Service Bus namespace host name, e.g. leap-sb.servicebus.windows.net.')
param serviceBusFullyQualifiedNamespace string

@description('Key Vault URI, e.g. https://kv.vault.azure.net/ (with the trailing slash).')
param keyVaultUri string

@description('Key Vault secret names: { m365ClientSecret, botAppSecret, stateSigningKey, notifyCert }.')
param vaultEntryNames object

param m365ClientId string
param graphBaseUrl string
param botAppId string
param botTenantId string
param botOpenIdMetadataUrl string
param publicBaseUrl string
param leapAppUrl string
param tablePrefix string = ''

@description('NOTIFY_CERT_ID: encryptionCertificateId of the current notification certificate.')
param notifyCertId string

@description('NOTIFY_CERT_PREVIOUS_ID: id of the previous certificate after a rotation; empty = none.')
param notifyCertPreviousId string = ''

@description('Version of the notify-cert secret holding the previous certificate (with notifyCertPreviousId).')
param notifyCertPreviousVersion string = ''

@description('Further settings merged over the defaults (name -> value).')
param extraSettings object = {}

// What the Functions host itself needs (identity-based AzureWebJobsStorage with the user-assigned identity).
var hostSettings = {
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
}

// Entra ID-authenticated telemetry with the user-assigned identity.
var entraTelemetrySettings = {
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}
var telemetrySettings = appInsightsEntraAuth ? entraTelemetrySettings : {}

var appSettings = {
  // Table Storage with the managed identity (the Go aztables client reads the endpoint and client id itself).
  TablesConnection__tableServiceUri: tableServiceUri
  TablesConnection__clientId: identityClientId
  // Service Bus triggers/outputs (extension 5.x) and the Go azservicebus sender.
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
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
  // Graph change notifications with resource data: the certificate (PEM with its key) and its id; after a
  // rotation, the previous certificate (a pinned version of the same secret) while subscriptions name it.
  NOTIFY_CERT_PEM: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${vaultEntryNames.notifyCert})'
  NOTIFY_CERT_ID: notifyCertId
  NOTIFY_CERT_PREVIOUS_ID: notifyCertPreviousId
  NOTIFY_CERT_PREVIOUS_PEM: empty(notifyCertPreviousId) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${vaultEntryNames.notifyCert}/${notifyCertPreviousVersion})'
}

@description('Every app setting, name -> value.')
output settings object = union(hostSettings, telemetrySettings, appSettings, extraSettings)
