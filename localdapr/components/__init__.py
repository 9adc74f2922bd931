"""Reading Dapr resource files (Component, Subscription, Configuration, Resiliency) and building components."""
