// Leap Change Microsoft 365 integration: Azure Functions (Flex Consumption, Linux, custom handler)
// with Table Storage, Service Bus, Key Vault and Application Insights, all reached with the app's
// user-assigned managed identity. See the README's Architecture and Deploying.
//
// Deploy with `azd up` (azure.yaml; parameters from infra/main.parameters.json, whose ${VAR} values come
// from the azd environment) or with scripts/deploy.sh (the same parameters file, ${VAR} values from the
// shell environment). Order of the deployment: identity -> role assignments -> Function App with its
// complete app settings, so the site never runs without settings or without access (infra/README.md).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Naming and placement
// ---------------------------------------------------------------------------------------------

@description('Azure region; must offer Flex Consumption. azd passes AZURE_LOCATION.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@description('azd environment name (azd passes AZURE_ENV_NAME); when set, every resource is tagged azd-env-name.')
@maxLength(64)
param environmentName string = ''

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
// App configuration (README, Settings)
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

@description('NOTIFY_CERT_PEM value: the certificate Graph encrypts channel-message notifications for (includeResourceData) with its RSA private key (2048 to 4096 bits), as PEM (CERTIFICATE + PRIVATE KEY or RSA PRIVATE KEY), stored in Key Vault as the secret notify-cert. Empty = keep the vault\'s notify-cert (a secret, or a Key Vault certificate of that name with content type application/x-pem-file).')
@secure()
param notifyCertPem string = ''

@description('NOTIFY_CERT_ID: the encryptionCertificateId new Graph subscriptions get (at most 128 characters). Give every new certificate a new id (infra/README.md, rotation).')
@minLength(1)
@maxLength(128)
param notifyCertId string = 'leap-notify-1'

@description('NOTIFY_CERT_PREVIOUS_ID: after a rotation, the id of the previous certificate, which live subscriptions still name until they are recreated. Empty = none.')
@maxLength(128)
param notifyCertPreviousId string = ''

@description('The version of the notify-cert secret that holds the previous certificate (NOTIFY_CERT_PREVIOUS_PEM). Required with notifyCertPreviousId.')
param notifyCertPreviousVersion string = ''

@description('LEAP_APP_URL: where the consent callback sends the admin back (the Leap Change web app).')
param leapAppUrl string

@description('PUBLIC_BASE_URL; empty = https://<function app name>.azurewebsites.net (the default host name in Azure\'s public cloud). Set it when a custom domain fronts the app, or in another cloud.')
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

@description('Flex Consumption maximum on-demand instance count per scale group: 40 to 1000 (infra/README.md: values below 40 are accepted only in some regions).')
@minValue(40)
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

@description('Grant the app Azure Service Bus Data Owner on each queue, as Microsoft documents for the Service Bus trigger, so that scaling can read queue lengths (infra/README.md). false = Data Receiver + Data Sender only.')
param serviceBusScaleRights bool = true

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
var identityName = '${namePrefix}-id-${suffix}'
var deploymentContainerName = 'app-package'

// Work queues (README, Architecture; names are contract: function.json queueName values).
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
  notifyCert: 'notify-cert'
}

// azd finds the environment's resources by azd-env-name and the service's Function App by
// azd-service-name (the service name in azure.yaml).
var azdServiceName = 'app'
var allTags = union(tags, {
  app: 'leapchange-m365'
}, empty(environmentName) ? {} : {
  'azd-env-name': environmentName
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
    notifyCertPem: notifyCertPem
    enablePurgeProtection: keyVaultPurgeProtection
    tags: allTags
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    location: location
    name: identityName
    tags: allTags
  }
}

// Before the Function App: the site is created (and updated) with access already granted.
module roles 'modules/roles.bicep' = {
  name: 'role-assignments'
  params: {
    principalId: identity.outputs.principalId
    serviceBusNamespaceName: serviceBus.outputs.name
    queueNames: serviceBus.outputs.queueNames
    dataStorageAccountName: dataStorage.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    serviceBusScaleRights: serviceBusScaleRights
    hostDiagnosticsTableAccess: hostDiagnosticsTableAccess
    appInsightsEntraAuth: appInsightsEntraAuth
  }
}

// The default host name of a Flex Consumption app in Azure's public cloud (no unique-hostname option is
// set); known before the site exists, so the settings can be written with the site.
var publicBase = empty(publicBaseUrl) ? 'https://${appName}.azurewebsites.net' : publicBaseUrl
var tableEndpoint = dataStorage.outputs.tableEndpoint
var tableServiceUri = endsWith(tableEndpoint, '/') ? substring(tableEndpoint, 0, length(tableEndpoint) - 1) : tableEndpoint

module appSettings 'modules/appsettings.bicep' = {
  name: 'app-settings'
  params: {
    hostStorageAccountName: hostStorage.outputs.name
    identityClientId: identity.outputs.clientId
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
    notifyCertId: notifyCertId
    notifyCertPreviousId: notifyCertPreviousId
    notifyCertPreviousVersion: notifyCertPreviousVersion
    extraSettings: extraAppSettings
  }
}

// After the role assignments (explicit) and the Key Vault secrets (through keyVault.outputs.vaultUri in the
// settings), so the site's Key Vault references can resolve as soon as RBAC has propagated.
module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  dependsOn: [
    roles
  ]
  params: {
    location: location
    name: appName
    planName: planName
    identityId: identity.outputs.id
    hostStorageBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    appSettings: appSettings.outputs.settings
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpAlwaysReadyInstances: httpAlwaysReadyInstances
    customRuntimeVersion: customRuntimeVersion
    tags: union(allTags, {
      'azd-service-name': azdServiceName
    })
  }
}

var defaultHostName = functionApp.outputs.defaultHostName

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
output principalId string = identity.outputs.principalId
output identityClientId string = identity.outputs.clientId
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output tableServiceUri string = tableServiceUri
output keyVaultName string = keyVault.outputs.name
output hostStorageAccountName string = hostStorage.outputs.name
output deploymentContainerUrl string = '${hostStorage.outputs.blobEndpoint}${deploymentContainerName}'

// For azd: its environment gets these (hooks in azure.yaml use them).
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.id
