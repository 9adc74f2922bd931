"""Reading Dapr resource files (Component, Subscription, Configuration, Resiliency); building components."""
