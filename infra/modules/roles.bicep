// Data-plane role assignments for the Function App's user-assigned identity (identity.bicep), each at the
// narrowest scope that works. main.bicep deploys these before the Function App, so
// the site starts with access already granted (RBAC still needs a few minutes to propagate; deploy.sh waits
// for the Key Vault references to resolve and retries the code upload through that window).
//   Service Bus  : Data Receiver + Data Sender on each work queue (triggers, output bindings and the Go
//                  azservicebus sender; every queue is both consumed and produced by the app), and Data
//                  Owner on each queue a function is triggered by (all four), because Microsoft documents
//                  "Azure Service Bus Data Receiver, Azure Service Bus Data Owner" for the Service Bus
//                  trigger (functions-service-bus-permissions): scaling reads the queue's message count
//                  through the administration API, which needs Manage rights; with Listen rights only,
//                  target-based scaling falls back to incremental scaling (functions-target-based-scaling).
//                  Data Owner is granted on the queue, never on the namespace. serviceBusScaleRights=false
//                  leaves Receiver + Sender only.
//   data storage : Storage Table Data Contributor on the data account (Go aztables store)
//   host storage : Storage Blob Data Owner (AzureWebJobsStorage: leases, keys, timer monitor; it also
//                  covers reading the Flex deployment container); optionally Storage Table Data
//                  Contributor for host diagnostic events. No queue role: no blob trigger, no Durable.
//   Key Vault    : Key Vault Secrets User (resolving the @Microsoft.KeyVault references)
//   App Insights : Monitoring Metrics Publisher (Entra ID-authenticated telemetry)

@description('Object (principal) id of the Function App\'s user-assigned identity.')
param principalId string

param serviceBusNamespaceName string
param queueNames string[]
param dataStorageAccountName string
param hostStorageAccountName string
param keyVaultName string
param appInsightsName string

@description('Grant Azure Service Bus Data Owner on each queue (Manage rights, so that scaling can read the queue length).')
param serviceBusScaleRights bool = true

@description('Grant Storage Table Data Contributor on the host account (host diagnostic events).')
param hostDiagnosticsTableAccess bool = true

@description('Grant Monitoring Metrics Publisher on Application Insights (Entra ID telemetry).')
param appInsightsEntraAuth bool = true

// Built-in role definition ids (the same in every tenant).
var roles = {
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = [
  for q in queueNames: {
    parent: namespace
    name: q
  }
]

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource queueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (q, i) in queueNames: {
    name: guid(queues[i].id, principalId, roles.serviceBusDataReceiver)
    scope: queues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (q, i) in queueNames: {
    name: guid(queues[i].id, principalId, roles.serviceBusDataSender)
    scope: queues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Manage rights on the triggering queues, for the scale controller's message count (see the header).
resource queueOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (q, i) in queueNames: if (serviceBusScaleRights) {
    name: guid(queues[i].id, principalId, roles.serviceBusDataOwner)
    scope: queues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource dataTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, principalId, roles.storageTableDataContributor)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, principalId, roles.storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hostDiagnosticsTableAccess) {
  name: guid(hostStorage.id, principalId, roles.storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (appInsightsEntraAuth) {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
