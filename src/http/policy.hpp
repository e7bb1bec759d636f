#pragma once
// Typed route policies: a route declares what it needs as values of types owned by the modules
// that enforce them (identity::Access, security::Body, ...). The router stores them without
// knowing their types, so a new kind of policy is a new struct in its module and recompiles
// nothing else; the enforcing middleware asks the route for its own type.
#include <memory>
#include <vector>

namespace hsea::http {

// One address per type (inline function statics are merged across translation units).
template <typename T>
const void* type_key() {
  static const char key = 0;
  return &key;
}

class Policies {
 public:
  Policies() = default;
  template <typename... P>
  explicit Policies(P... policies) {
    (add(std::move(policies)), ...);
  }

  template <typename P>
  void add(P policy) {
    entries_.push_back({type_key<P>(), std::make_shared<const P>(std::move(policy))});
  }
  // The route's policy of type P, or null when it declares none.
  template <typename P>
  const P* find() const {
    for (const Entry& e : entries_) {
      if (e.type == type_key<P>()) return static_cast<const P*>(e.value.get());
    }
    return nullptr;
  }

 private:
  struct Entry {
    const void* type;
    std::shared_ptr<const void> value;
  };
  std::vector<Entry> entries_;
};

}  // namespace hsea::http
