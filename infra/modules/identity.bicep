// The Function App's user-assigned managed identity.
//
// It is created (and given its data-plane roles in roles.bicep) before the Function App, so that the site
// can be created and every redeploy can update it with its complete app settings in the same PUT, Key
// Vault references included: Microsoft documents a user-assigned identity with access granted in advance
// for apps that "need to refer to secrets at creation time, when a system-assigned identity isn't
// available yet" (app-service-key-vault-references, "Access vaults with a user-assigned identity").
// The handler, the Functions host and the bindings select it with the `__clientId` settings.

@description('Azure region.')
param location string

@description('Identity name.')
@minLength(3)
@maxLength(128)
param name string

param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
