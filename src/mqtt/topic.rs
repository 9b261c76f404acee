//! mqant's topic grammar: `module[@instance]/handler[/msgid]`.

/// A parsed request topic. Borrowed from the PUBLISH topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topic<'a> {
    /// The service (a node's `NodeHello.service`).
    pub module: &'a str,
    /// A node id that pins the request to one node (`module@instance`).
    pub instance: Option<&'a str>,
    /// The handler: a name a node announced for a route.
    pub handler: &'a str,
    /// Exactly three segments with a non-empty third: a request, answered on
    /// the same topic. Otherwise a notification.
    pub msg_id: Option<&'a str>,
}

impl Topic<'_> {
    /// The client waits for a reply.
    pub fn is_request(&self) -> bool {
        self.msg_id.is_some()
    }
}

/// Why a topic names no handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicError {
    /// Fewer than two segments, or an empty module or handler.
    Shape,
}

/// Splits a topic as mqant does: on every `/`; two segments are a
/// notification, exactly three (the third non-empty) a request, four or
/// more a notification again (mqant takes a msgid only from exactly three).
/// `module@` with an empty instance means any instance.
pub fn parse_topic(topic: &str) -> Result<Topic<'_>, TopicError> {
    let mut parts = topic.split('/');
    let (Some(module), Some(handler)) = (parts.next(), parts.next()) else {
        return Err(TopicError::Shape);
    };
    let third = parts.next();
    let msg_id = match (third, parts.next()) {
        (Some(id), None) if !id.is_empty() => Some(id),
        _ => None,
    };
    let (module, instance) = match module.split_once('@') {
        Some((m, i)) => (m, (!i.is_empty()).then_some(i)),
        None => (module, None),
    };
    if module.is_empty() || handler.is_empty() {
        return Err(TopicError::Shape);
    }
    Ok(Topic {
        module,
        instance,
        handler,
        msg_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(
        module: &'a str,
        instance: Option<&'a str>,
        handler: &'a str,
        msg_id: Option<&'a str>,
    ) -> Result<Topic<'a>, TopicError> {
        Ok(Topic {
            module,
            instance,
            handler,
            msg_id,
        })
    }

    #[test]
    fn topics_split_as_mqant_splits_them() {
        assert_eq!(
            parse_topic("Echo/HD_Echo/7"),
            t("Echo", None, "HD_Echo", Some("7"))
        );
        assert_eq!(parse_topic("Echo/HD_Log"), t("Echo", None, "HD_Log", None));
        assert_eq!(
            parse_topic("Echo@n2/HD_Echo/x"),
            t("Echo", Some("n2"), "HD_Echo", Some("x"))
        );
        assert_eq!(
            parse_topic("Echo@/HD_Echo/1"),
            t("Echo", None, "HD_Echo", Some("1"))
        );
        // Four or more segments, or an empty third: a notification (mqant).
        assert_eq!(
            parse_topic("Echo/HD_Echo/1/2"),
            t("Echo", None, "HD_Echo", None)
        );
        assert_eq!(
            parse_topic("Echo/HD_Echo/"),
            t("Echo", None, "HD_Echo", None)
        );
        // mqant issue #143: any third segment is a msgid.
        assert_eq!(
            parse_topic("gate/HD_chat/face"),
            t("gate", None, "HD_chat", Some("face"))
        );
        assert!(parse_topic("Echo/HD_Echo/7").unwrap().is_request());
    }

    #[test]
    fn topics_that_name_no_handler_are_refused() {
        for bad in ["", "Echo", "/HD_Echo", "Echo/", "@x/HD_Echo/1"] {
            assert_eq!(parse_topic(bad), Err(TopicError::Shape), "{bad:?}");
        }
        // A leading slash shifts the segments (mqant): module "" → refused.
        assert_eq!(parse_topic("/Echo/HD_Echo/1"), Err(TopicError::Shape));
    }
}
