// Flex Consumption (FC1, Linux) plan and the Function App running the Go custom handler.
//
// On Flex the worker runtime lives in functionAppConfig.runtime ('custom'); the app settings
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE and WEBSITE_CONTENT* are
// not allowed there. Code is deployed as a zip into the deployment blob container (OneDeploy), read with
// the app's user-assigned identity.
//
// The site is written with its complete app settings (appsettings.bicep) in siteConfig.appSettings: a site
// PUT replaces the whole set, so a redeploy never leaves the app with only part of it. The app runs as the
// user-assigned identity of identity.bicep, whose role assignments main.bicep deploys before this module,
// and Key Vault references resolve with it (keyVaultReferenceIdentity).

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Function App name (becomes <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Resource id of the app\'s user-assigned identity (identity.bicep).')
param identityId string

@description('Blob endpoint of the host storage account, e.g. https://x.blob.core.windows.net/.')
param hostStorageBlobEndpoint string

@description('Container in the host storage account that holds the deployment package.')
param deploymentContainerName string

@description('Every app setting, name -> value (appsettings.bicep).')
param appSettings object

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on on-demand instances per scale group (Flex Consumption accepts 40 to 1000 in every region; see infra/README.md).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Always-ready instances for the HTTP group (GraphNotifications must answer Graph within 3 s; 0 = scale to zero).')
@minValue(0)
param httpAlwaysReadyInstances int = 1

@description('functionAppConfig.runtime.version for the custom runtime.')
param customRuntimeVersion string = '1.0'

param tags object = {}

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
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
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

// No FTP and no basic-auth publishing: deployments authenticate with Entra ID (az CLI or azd token).
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
output defaultHostName string = site.properties.defaultHostName
