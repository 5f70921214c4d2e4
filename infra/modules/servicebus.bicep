// Service Bus namespace (Standard: duplicate detection and scheduled messages need Standard or above)
// with the work queues (README, Architecture). Identity-only: SAS keys are disabled, the app uses
// ServiceBusConnection__fullyQualifiedNamespace with its managed identity.

@description('Azure region.')
param location string

@description('Namespace name (6-50 chars, letters, digits, hyphens).')
@minLength(6)
@maxLength(50)
param name string

@description('Queue names (README, Architecture; function.json queueName values).')
param queueNames string[]

@description('Deliveries before a message is dead-lettered (the Functions trigger abandons on failure).')
@minValue(1)
param maxDeliveryCount int = 10

@description('Message-id duplicate detection window (ISO 8601, 20 s to 7 days).')
param duplicateDetectionWindow string = 'PT1H'

@description('Peek-lock duration (ISO 8601, at most 5 minutes); the host renews it up to maxAutoLockRenewalDuration.')
param lockDuration string = 'PT5M'

@description('Time to live of a message not yet received; expired messages are dead-lettered.')
param defaultMessageTimeToLive string = 'P14D'

param tags object = {}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = [
  for q in queueNames: {
    parent: namespace
    name: q
    properties: {
      maxDeliveryCount: maxDeliveryCount
      lockDuration: lockDuration
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
      deadLetteringOnMessageExpiration: true
      defaultMessageTimeToLive: defaultMessageTimeToLive
      requiresSession: false
      enablePartitioning: false
      enableBatchedOperations: true
      maxSizeInMegabytes: 1024
    }
  }
]

output name string = namespace.name
output id string = namespace.id
// serviceBusEndpoint looks like https://<ns>.servicebus.windows.net:443/ ; the bindings want the bare host.
output fullyQualifiedNamespace string = split(split(split(namespace.properties.serviceBusEndpoint, '//')[1], '/')[0], ':')[0]
output queueNames string[] = [for (q, i) in queueNames: queues[i].name]
