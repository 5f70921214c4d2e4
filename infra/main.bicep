// Leap Change Microsoft 365 integration: Azure Functions (Flex Consumption, Linux, custom handler)
// with Table Storage, Service Bus, Key Vault and Application Insights, all reached with the app's
// system-assigned managed identity. See DESIGN.md §2 and shared reference functions-host.md §12-13.
//
//   az deployment group create -g <rg> --template-file infra/main.bicep \
//     --parameters @infra/main.parameters.json            (or: scripts/deploy.sh)

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Naming and placement
// ---------------------------------------------------------------------------------------------

@description('Azure region; must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Short prefix for resource names (letters, digits, hyphens; lower case).')
@minLength(3)
@maxLength(12)
param namePrefix string = 'leapm365'

@description('Function App name; empty = <namePrefix>-func-<unique suffix>.')
@maxLength(60)
param functionAppName string = ''

@description('Tags for every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// App configuration (DESIGN.md §2.2)
// ---------------------------------------------------------------------------------------------

@description('M365_CLIENT_ID: application (client) id of the multi-tenant Entra app.')
param m365ClientId string

@description('M365_CLIENT_SECRET value, stored in Key Vault. Empty = keep the secret already in the vault.')
@secure()
param m365ClientSecret string = ''

@description('GRAPH_BASE_URL.')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('BOT_APP_ID: the Teams bot\'s Entra application (client) id.')
param botAppId string

@description('BOT_TENANT_ID: tenant of the bot\'s app registration.')
param botTenantId string = tenant().tenantId

@description('BOT_APP_SECRET value, stored in Key Vault. Empty = keep the secret already in the vault.')
@secure()
param botAppSecret string = ''

@description('BOT_OPENID_METADATA_URL.')
param botOpenIdMetadataUrl string = 'https://login.botframework.com/v1/.well-known/openidconfiguration'

@description('STATE_SIGNING_KEY value (at least 32 random bytes, e.g. `openssl rand -base64 48`), stored in Key Vault. Empty = keep the one in the vault. Rotating it invalidates the clientState of live Graph subscriptions.')
@secure()
param stateSigningKey string = ''

@description('LEAP_APP_URL: where the consent callback sends the admin back (the Leap Change web app).')
param leapAppUrl string

@description('PUBLIC_BASE_URL; empty = https://<function app default host name>. Set it when a custom domain fronts the app.')
param publicBaseUrl string = ''

@description('TABLE_PREFIX: optional prefix for every table name.')
param tablePrefix string = ''

@description('Extra app settings (name -> value) merged over the generated ones.')
param extraAppSettings object = {}

// ---------------------------------------------------------------------------------------------
// Scale and platform
// ---------------------------------------------------------------------------------------------

@description('Flex Consumption instance memory (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption maximum instance count per scale group.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances of the HTTP group (Graph wants webhook answers within 3 s). 0 = scale to zero.')
@minValue(0)
@maxValue(10)
param httpAlwaysReadyInstances int = 1

@description('functionAppConfig.runtime.version for runtime "custom".')
param customRuntimeVersion string = '1.0'

@description('Service Bus duplicate-detection window (ISO 8601 duration, 20 s to 7 days).')
param duplicateDetectionWindow string = 'PT1H'

@description('Service Bus deliveries before dead-lettering.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 10

@description('Send telemetry with Entra ID (managed identity) and refuse instrumentation-key ingestion.')
param appInsightsEntraAuth bool = true

@description('Log Analytics retention (days).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Grant the app Storage Table Data Contributor on the host storage account (host diagnostic events).')
param hostDiagnosticsTableAccess bool = true

@description('Key Vault purge protection (cannot be turned off again).')
param keyVaultPurgeProtection bool = true

@description('Create the Azure Bot registration (messaging endpoint + Teams channel).')
param deployBot bool = true

@description('Azure Bot app type for BOT_APP_ID.')
@allowed([
  'SingleTenant'
  'MultiTenant'
])
param botMsaAppType string = 'SingleTenant'

@description('Bot display name in Teams.')
param botDisplayName string = 'Leap Change'

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, namePrefix)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var appName = empty(functionAppName) ? '${namePrefix}-func-${suffix}' : functionAppName
var hostStorageName = take('${compactPrefix}host${suffix}', 24)
var dataStorageName = take('${compactPrefix}data${suffix}', 24)
var serviceBusName = '${namePrefix}-sb-${suffix}'
var keyVaultName = take('kv${compactPrefix}${suffix}', 24)
var workspaceName = '${namePrefix}-log-${suffix}'
var appInsightsName = '${namePrefix}-appi-${suffix}'
var planName = '${namePrefix}-plan-${suffix}'
var botName = '${namePrefix}-bot-${suffix}'
var deploymentContainerName = 'app-package'

// Work queues of DESIGN.md §2.1 (names are contract: function.json queueName values).
var queueNames = [
  'sync-jobs'
  'channel-events'
  'outbound-mail'
  'outbound-teams'
]

// Key Vault secret names (Key Vault allows letters, digits and hyphens only).
var secretNames = {
  m365ClientSecret: 'm365-client-secret'
  botAppSecret: 'bot-app-secret'
  stateSigningKey: 'state-signing-key'
}

var allTags = union(tags, {
  app: 'leapchange-m365'
})

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    workspaceName: workspaceName
    appInsightsName: appInsightsName
    retentionInDays: logRetentionDays
    disableLocalAuth: appInsightsEntraAuth
    tags: allTags
  }
}

module hostStorage 'modules/storage.bicep' = {
  name: 'host-storage'
  params: {
    location: location
    name: hostStorageName
    blobContainers: [
      deploymentContainerName
    ]
    tags: allTags
  }
}

module dataStorage 'modules/storage.bicep' = {
  name: 'data-storage'
  params: {
    location: location
    name: dataStorageName
    tags: allTags
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'service-bus'
  params: {
    location: location
    name: serviceBusName
    queueNames: queueNames
    maxDeliveryCount: maxDeliveryCount
    duplicateDetectionWindow: duplicateDetectionWindow
    lockDuration: 'PT5M'
    tags: allTags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    location: location
    name: keyVaultName
    vaultEntryNames: secretNames
    m365ClientSecret: m365ClientSecret
    botAppSecret: botAppSecret
    stateSigningKey: stateSigningKey
    enablePurgeProtection: keyVaultPurgeProtection
    tags: allTags
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    location: location
    name: appName
    planName: planName
    hostStorageAccountName: hostStorage.outputs.name
    hostStorageBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    appInsightsEntraAuth: appInsightsEntraAuth
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpAlwaysReadyInstances: httpAlwaysReadyInstances
    customRuntimeVersion: customRuntimeVersion
    tags: allTags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'role-assignments'
  params: {
    principalId: functionApp.outputs.principalId
    serviceBusNamespaceName: serviceBus.outputs.name
    queueNames: serviceBus.outputs.queueNames
    dataStorageAccountName: dataStorage.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    hostDiagnosticsTableAccess: hostDiagnosticsTableAccess
    appInsightsEntraAuth: appInsightsEntraAuth
  }
}

var defaultHostName = functionApp.outputs.defaultHostName
var publicBase = empty(publicBaseUrl) ? 'https://${defaultHostName}' : publicBaseUrl
var tableEndpoint = dataStorage.outputs.tableEndpoint
var tableServiceUri = endsWith(tableEndpoint, '/') ? substring(tableEndpoint, 0, length(tableEndpoint) - 1) : tableEndpoint

module appSettings 'modules/appsettings.bicep' = {
  name: 'app-settings'
  dependsOn: [
    roles
  ]
  params: {
    functionAppName: functionApp.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    appInsightsConnectionString: monitoring.outputs.connectionString
    appInsightsEntraAuth: appInsightsEntraAuth
    tableServiceUri: tableServiceUri
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    keyVaultUri: keyVault.outputs.vaultUri
    vaultEntryNames: secretNames
    m365ClientId: m365ClientId
    graphBaseUrl: graphBaseUrl
    botAppId: botAppId
    botTenantId: botTenantId
    botOpenIdMetadataUrl: botOpenIdMetadataUrl
    publicBaseUrl: publicBase
    leapAppUrl: leapAppUrl
    tablePrefix: tablePrefix
    extraSettings: extraAppSettings
  }
}

module bot 'modules/bot.bicep' = if (deployBot) {
  name: 'bot'
  params: {
    name: botName
    displayName: botDisplayName
    botAppId: botAppId
    botTenantId: botTenantId
    msaAppType: botMsaAppType
    endpoint: '${publicBase}/api/messages'
    tags: allTags
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (no secrets: function keys come from `az functionapp keys list`)
// ---------------------------------------------------------------------------------------------

output functionAppName string = functionApp.outputs.name
output defaultHostName string = defaultHostName
output publicBaseUrl string = publicBase
output functionsBaseUrl string = 'https://${defaultHostName}/api'
output apiBaseUrl string = '${publicBase}/api/orgs'
output consentRedirectUri string = '${publicBase}/api/consent/callback'
output graphNotificationUrl string = '${publicBase}/api/graph/notifications'
output graphLifecycleUrl string = '${publicBase}/api/graph/lifecycle'
output botMessagingEndpoint string = '${publicBase}/api/messages'
output principalId string = functionApp.outputs.principalId
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output tableServiceUri string = tableServiceUri
output keyVaultName string = keyVault.outputs.name
output hostStorageAccountName string = hostStorage.outputs.name
output deploymentContainerUrl string = '${hostStorage.outputs.blobEndpoint}${deploymentContainerName}'
