// Flex Consumption (FC1, Linux) plan and the Function App running the Go custom handler.
//
// On Flex the worker runtime lives in functionAppConfig.runtime ('custom'); the app settings
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and WEBSITE_CONTENT* are
// not allowed there. Code is deployed as a zip into the deployment blob container (OneDeploy), read with
// the app's system-assigned identity.
//
// The site is created with the settings the host needs to start; the full §2.2 set is written by
// appsettings.bicep after the role assignments exist (that config change also makes the platform
// re-resolve the Key Vault references).

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Function App name (becomes <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Host storage account name (AzureWebJobsStorage, identity-based).')
param hostStorageAccountName string

@description('Blob endpoint of the host storage account, e.g. https://x.blob.core.windows.net/.')
param hostStorageBlobEndpoint string

@description('Container in the host storage account that holds the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Send telemetry with the managed identity (needs Monitoring Metrics Publisher on the component).')
param appInsightsEntraAuth bool = true

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances per scale group.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP group (GraphNotifications must answer Graph within 3 s; 0 = scale to zero).')
@minValue(0)
param httpAlwaysReadyInstances int = 1

@description('functionAppConfig.runtime.version for the custom runtime.')
param customRuntimeVersion string = '1.0'

param tags object = {}

// What the host needs to start; appsettings.bicep later writes these again together with the rest.
var hostSettingsCore = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: hostStorageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
]
var hostSettingsEntraAuth = [
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
]
var hostSettings = appInsightsEntraAuth ? concat(hostSettingsCore, hostSettingsEntraAuth) : hostSettingsCore

// HTTP functions scale together as the group 'http'; keeping one instance warm holds the Graph
// webhook validation/notification answer under Graph's 3 s budget.
var alwaysReadyHttp = [
  {
    name: 'http'
    instanceCount: httpAlwaysReadyInstances
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: hostSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: httpAlwaysReadyInstances > 0 ? alwaysReadyHttp : []
      }
      runtime: {
        name: 'custom'
        version: customRuntimeVersion
      }
    }
  }
}

// No FTP and no basic-auth publishing: deployments authenticate with Entra ID (az CLI token).
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
