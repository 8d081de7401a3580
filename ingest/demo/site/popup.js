// Personalisation demo: visitors in the "pricing-returner" audience (the
// third view of a pricing page within a week, see the default rules) are
// invited to the webinar. ls.js dispatches leadstream:audiences after each
// page view it delivered; leadstream.audiences(cb) asks at any time.
document.addEventListener('leadstream:audiences', function (e) {
  if (e.detail.audiences.indexOf('pricing-returner') < 0 || sessionStorage.getItem('webinar-popup-closed')) return;
  var box = document.getElementById('webinar-popup');
  if (box) box.hidden = false;
});
function closeWebinarPopup() {
  sessionStorage.setItem('webinar-popup-closed', '1');
  document.getElementById('webinar-popup').hidden = true;
}
